/**
 * Shared by the DNS tunnel suites: the gateway a test server announced, and a
 * 1:1 conversation of N messages over a tunnel pipe that must arrive once
 * and in order.
 */
import { expect } from "vitest";
import { type AnnouncedTunnel, announcedTunnel } from "../../scripts/harness/tunnel.ts";
import {
  type ClientSession,
  type DnsExchange,
  type DnsTunnelTransportFactory,
  dnsTunnelTransportFactory,
} from "@remessenger/client-core";
import { ChatKind, CreateChatRequest } from "@remessenger/protocol";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent } from "../../scripts/harness/wait.ts";

export type Gateway = AnnouncedTunnel;

/** The tunnel of the server's "listening" log line. */
export const tunnelOf = announcedTunnel;

export interface ConversationOptions {
  serverUrl: string;
  gateway: Gateway;
  kind: "doh" | "dns";
  exchanges: () => DnsExchange[];
  nameBudget?: number;
  messages: number;
  deadlineMs?: number;
  /** Called at the end with the sender's transport factory (what it learned, e.g. the name budget). */
  onFactory?: (factory: DnsTunnelTransportFactory) => void;
}

/** Bob sends `messages` texts to Alice over the tunnel; all must arrive once, in order. */
export async function conversation(options: ConversationOptions): Promise<void> {
  const { serverUrl, gateway, kind, exchanges, nameBudget, messages } = options;
  const alice = await registerTestDevice(serverUrl, "alice");
  const bob = await registerTestDevice(serverUrl, "bob");
  const factories: DnsTunnelTransportFactory[] = [];
  const tunnelSession = (device: TestDevice): ClientSession => {
    const transports = dnsTunnelTransportFactory({
      kind,
      exchanges: exchanges(),
      tunnel: { zone: gateway.zone, publicKey: gateway.publicKey },
      ...(nameBudget === undefined ? {} : { nameBudget }),
    });
    factories.push(transports);
    return sessionFor(device, {
      transports,
      timing: { connectTimeoutMs: 10_000, requestTimeoutMs: 15_000, pingIntervalMs: 5_000, pingTimeoutMs: 10_000 },
    });
  };
  const receiver = tunnelSession(alice);
  const sender = tunnelSession(bob);
  const received: { seq: number; text: string | undefined }[] = [];
  const allIn = new Promise<void>((resolve) => {
    receiver.events.on("message", ({ message, isOwnDevice }) => {
      if (isOwnDevice) return;
      received.push({
        seq: message.seq,
        text: message.content?.body?.$case === "text" ? message.content.body.value : undefined,
      });
      if (received.length >= messages) resolve();
    });
  });
  try {
    await receiver.start();
    await sender.start();
    await waitForEvent(
      sender.events,
      "connection",
      (status) => status.state === "connected",
      30_000,
      "sender connected",
    );
    const { chat } = await sender.request(
      "createChat",
      CreateChatRequest.fromPartial({ kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [alice.profile.userId] }),
      { timeoutMs: 20_000 },
    );
    if (chat === undefined) throw new Error("no chat");
    for (let i = 0; i < messages; i += 1) await sender.send(chat.chatId, `message ${i} via ${kind}`);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      allIn,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`only ${received.length} of ${messages} messages arrived`));
        }, options.deadlineMs ?? 90_000);
      }),
    ]);
    clearTimeout(timer);
    expect(received.map((message) => message.text)).toEqual(
      Array.from({ length: messages }, (_, i) => `message ${i} via ${kind}`),
    );
    expect(received.map((message) => message.seq)).toEqual(Array.from({ length: messages }, (_, i) => i + 1));
    expect(sender.status.transport).toBe(kind);
    const senderFactory = factories[1];
    if (senderFactory !== undefined) options.onFactory?.(senderFactory);
  } finally {
    await Promise.all([receiver.stop(), sender.stop()]);
  }
}
