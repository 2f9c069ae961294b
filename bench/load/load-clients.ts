/**
 * The load tool's clients: real devices of the real server, logged in over
 * the WebSocket frame protocol or over gRPC. Each registers (a fresh Ed25519
 * identity), creates chats, subscribes, sends and acks cumulatively as a
 * client that stores what it gets. Payloads are opaque bytes: the load tool
 * does no end-to-end encryption work (the server never sees the difference).
 */
import { sign } from "node:crypto";
import { Metadata, createChannel, createClient, type Channel } from "nice-grpc";
import WebSocket from "ws";
import {
  registerProof,
  RemessengerError,
  errorCodeName,
  decodeServerFrame,
  encodeClientFrame,
  AuthServiceDefinition,
  ChatServiceDefinition,
  type Message,
  MessageServiceDefinition,
} from "@remessenger/protocol";
import { FrameDriver, type Identity, newDeviceKey } from "../../scripts/harness/frame-driver.ts";
import { groupGenesis } from "../../scripts/harness/group-driver.ts";

export type TransportChoice = "ws" | "grpc";

export interface LoadClientEvents {
  onMessage(message: Message, receivedMs: number): void;
}

export interface LoadClient {
  readonly userId: string;
  readonly deviceId: string;
  /** A group chat with `memberUserIds` (the creator included); returns its id. */
  createChat(memberUserIds: readonly string[]): Promise<string>;
  /** Subscribes; resolves once everything queued before is pushed. */
  subscribe(events: LoadClientEvents): Promise<void>;
  /** Resolves with the seq once the server made it durable; rejects with the error code's name. */
  send(chatId: string, messageId: Uint8Array, payload: Uint8Array): Promise<number>;
  close(): Promise<void>;
}

/** An error as the summary counts it: the protocol's code name, or what failed. */
export function errorName(error: unknown): string {
  if (error instanceof RemessengerError) return errorCodeName(error.code);
  if (typeof error === "object" && error !== null && "code" in error && "details" in error) {
    return `GRPC_${String((error as { code: unknown }).code)}`;
  }
  return error instanceof Error ? (error.message.split("\n")[0]?.slice(0, 60) ?? "error") : "error";
}

export async function connectClient(transport: TransportChoice, target: string, name: string): Promise<LoadClient> {
  return transport === "ws" ? WsLoadClient.connect(target, name) : GrpcLoadClient.connect(target, name);
}

const SEND_ID_BASE = 1_000;

/** The WebSocket pipe: setup through the harness's FrameDriver, then a lean loop on the socket. */
class WsLoadClient implements LoadClient {
  readonly userId: string;
  readonly deviceId: string;
  private readonly driver: FrameDriver;
  private readonly pending = new Map<number, { resolve(seq: number): void; reject(error: unknown): void }>();
  private nextId = SEND_ID_BASE;
  private readonly acks = new Map<string, number>();
  private isAckScheduled = false;

  private readonly identity: Identity;

  static async connect(url: string, name: string): Promise<WsLoadClient> {
    const driver = await FrameDriver.connect(url);
    const identity = await driver.register(name);
    return new WsLoadClient(driver, identity);
  }

  private constructor(driver: FrameDriver, identity: Identity) {
    this.driver = driver;
    this.identity = identity;
    this.userId = identity.userId;
    this.deviceId = identity.deviceId;
  }

  /** A group (several chats between the same two clients stay apart), signed by this device. */
  async createChat(memberUserIds: readonly string[]): Promise<string> {
    const result = await this.driver.call({
      $case: "createChat",
      value: groupGenesis(this.identity, memberUserIds, "load").request,
    });
    if (result.chat === undefined) throw new Error("no chat in answer");
    return result.chat.chatId;
  }

  async subscribe(events: LoadClientEvents): Promise<void> {
    await this.driver.subscribe();
    await this.driver.waitFor(() => this.driver.isSynced(), "sync_complete", 60_000);
    const socket = this.driver.socket;
    socket.removeAllListeners("message");
    socket.on("message", (data: Buffer) => {
      this.onData(data, events);
    });
  }

  send(chatId: string, messageId: Uint8Array, payload: Uint8Array): Promise<number> {
    const requestId = this.nextId;
    this.nextId += 1;
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.pending.set(requestId, { resolve, reject });
    this.driver.socket.send(
      encodeClientFrame({
        requestId,
        request: { $case: "sendMessage", value: { chatId, messageId, payload, devicePayloads: [] } },
      }),
    );
    return promise;
  }

  async close(): Promise<void> {
    for (const waiting of this.pending.values()) waiting.reject(new Error("closed"));
    this.pending.clear();
    if (this.driver.closeCode !== undefined) return;
    this.driver.close();
    const timer = setTimeout(() => this.driver.socket.terminate(), 5_000);
    await this.driver.closed;
    clearTimeout(timer);
  }

  private onData(data: Buffer, events: LoadClientEvents): void {
    const receivedMs = performance.now();
    const { requestId, body } = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (body.$case === "push") {
      const push = body.value.push;
      if (push?.$case !== "message") return;
      events.onMessage(push.value, receivedMs);
      this.acks.set(push.value.chatId, Math.max(this.acks.get(push.value.chatId) ?? 0, push.value.seq));
      this.scheduleAck();
      return;
    }
    const waiting = this.pending.get(requestId);
    if (waiting === undefined) return;
    this.pending.delete(requestId);
    if (body.$case === "sendMessage") waiting.resolve(body.value.seq);
    else if (body.$case === "error") waiting.reject(new RemessengerError(body.value.code, body.value.message));
    else waiting.reject(new Error(`unexpected answer ${body.$case}`));
  }

  /** One cumulative ack per burst of frames. */
  private scheduleAck(): void {
    if (this.isAckScheduled) return;
    this.isAckScheduled = true;
    setImmediate(() => {
      this.isAckScheduled = false;
      const socket = this.driver.socket;
      if (socket.readyState !== WebSocket.OPEN || this.acks.size === 0) return;
      const acks = [...this.acks].map(([chatId, throughSeq]) => ({ chatId, throughSeq }));
      this.acks.clear();
      socket.send(encodeClientFrame({ requestId: 0, request: { $case: "ack", value: { acks } } }));
    });
  }
}

/** gRPC: the services of service.proto with a bearer token; pushes by server streaming. */
class GrpcLoadClient implements LoadClient {
  readonly userId: string;
  readonly deviceId: string;
  private readonly channel: Channel;
  private readonly messages;
  private readonly metadata: Metadata;
  private readonly abort = new AbortController();
  private readonly acks = new Map<string, number>();
  private isAckScheduled = false;

  static async connect(address: string, name: string): Promise<GrpcLoadClient> {
    const channel = createChannel(address);
    const auth = createClient(AuthServiceDefinition, channel);
    const key = newDeviceKey();
    const { nonce } = await auth.getChallenge({});
    const result = await auth.register({
      displayName: name,
      identityKey: key.publicKey,
      nonce,
      signature: sign(null, registerProof(nonce, key.publicKey, name), key.privateKey),
    });
    return new GrpcLoadClient(channel, { key, userId: result.userId, deviceId: result.deviceId }, result.sessionToken);
  }

  private readonly identity: Identity;

  private constructor(channel: Channel, identity: Identity, token: string) {
    this.channel = channel;
    this.messages = createClient(MessageServiceDefinition, channel);
    this.identity = identity;
    this.userId = identity.userId;
    this.deviceId = identity.deviceId;
    this.metadata = Metadata({ authorization: `Bearer ${token}` });
  }

  /** A group (several chats between the same two clients stay apart), signed by this device. */
  async createChat(memberUserIds: readonly string[]): Promise<string> {
    const { chat } = await createClient(ChatServiceDefinition, this.channel).createChat(
      groupGenesis(this.identity, memberUserIds, "load").request,
      { metadata: this.metadata },
    );
    if (chat === undefined) throw new Error("no chat in answer");
    return chat.chatId;
  }

  async subscribe(events: LoadClientEvents): Promise<void> {
    const stream = this.messages.subscribe({}, { metadata: this.metadata, signal: this.abort.signal });
    const { promise: synced, resolve } = Promise.withResolvers<void>();
    void (async () => {
      try {
        for await (const { push } of stream) {
          const value = push?.push;
          if (value?.$case === "syncComplete") resolve();
          if (value?.$case !== "message") continue;
          events.onMessage(value.value, performance.now());
          this.acks.set(value.value.chatId, Math.max(this.acks.get(value.value.chatId) ?? 0, value.value.seq));
          this.scheduleAck();
        }
      } catch {
        // ended by close(), or the server went away: the summary counts what never arrived
      }
    })();
    await synced;
  }

  async send(chatId: string, messageId: Uint8Array, payload: Uint8Array): Promise<number> {
    const answer = await this.messages.sendMessage(
      { chatId, messageId, payload, devicePayloads: [] },
      { metadata: this.metadata },
    );
    return answer.seq;
  }

  async close(): Promise<void> {
    this.abort.abort();
    this.channel.close();
    await Promise.resolve();
  }

  private scheduleAck(): void {
    if (this.isAckScheduled) return;
    this.isAckScheduled = true;
    setImmediate(() => {
      this.isAckScheduled = false;
      if (this.acks.size === 0 || this.abort.signal.aborted) return;
      const acks = [...this.acks].map(([chatId, throughSeq]) => ({ chatId, throughSeq }));
      this.acks.clear();
      this.messages.ack({ acks }, { metadata: this.metadata }).catch(() => undefined); // a lost ack is sent again with the next one (cumulative)
    });
  }
}
