/**
 * The transport ladder on the real server: the session falls from WebSocket
 * to HTTPS when WebSocket is refused, reset after the upgrade, or silently
 * blackholed; it climbs back once WebSocket heals; messages keep flowing
 * throughout, each once, in order.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type SwitchProxy, startSwitchProxy } from "../../scripts/harness/switch-proxy.ts";
import {
  TransportLadder,
  systemClock,
  contentText,
  httpsTransportFactory,
  webSocketTransportFactory,
  type ClientSession,
  type ReceivedMessageEvent,
} from "@remessenger/client-core";
import { ChatKind } from "@remessenger/protocol";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent, waitUntil } from "../../scripts/harness/wait.ts";

let server: TestServer;
let wsPath: SwitchProxy;
const sessions: ClientSession[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
  await wsPath.close();
});

/** WebSocket goes through a proxy the test controls; HTTPS reaches the server directly. */
async function onLadder(device: TestDevice): Promise<ClientSession> {
  const ladder = new TransportLadder({
    rungs: [webSocketTransportFactory({ serverUrl: wsPath.url }), httpsTransportFactory({ serverUrl: server.url })],
    clock: systemClock,
    timing: { raceStaggerMs: 150, failureBackoffMs: 100, maxBackoffMs: 800, probeIntervalMs: 150 },
  });
  const session = sessionFor(device, { transports: ladder });
  sessions.push(session);
  await session.start();
  return session;
}

function transportIs(session: ClientSession, kind: string, timeoutMs = 15_000): Promise<unknown> {
  if (session.status.transport === kind && session.status.state === "connected") return Promise.resolve();
  return waitForEvent(
    session.events,
    "connection",
    (s) => s.transport === kind && s.state === "connected",
    timeoutMs,
    `connected over ${kind}`,
  );
}

async function conversation(): Promise<{
  a: ClientSession;
  b: ClientSession;
  chatId: string;
  toBob: ReceivedMessageEvent[];
}> {
  const alice = await registerTestDevice(server.url, "Alice");
  const bob = await registerTestDevice(server.url, "Bob");
  const a = await onLadder(alice);
  const b = await onLadder(bob);
  const toBob: ReceivedMessageEvent[] = [];
  b.events.on("message", (e) => {
    if (!e.isOwnDevice) toBob.push(e);
  });
  const { chat } = await a.request(
    "createChat",
    { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [bob.profile.userId], title: "" },
    { timeoutMs: 10_000 },
  );
  return { a, b, chatId: chat?.chatId ?? "", toBob };
}

function texts(events: ReceivedMessageEvent[]): Array<string | undefined> {
  return events.map((e) => contentText(e.message.content));
}

describe("transport ladder", () => {
  it("uses HTTPS while WebSocket is refused and climbs back to WebSocket once it heals", async () => {
    wsPath = await startSwitchProxy(server.url, "refuse");
    const { a, b, chatId, toBob } = await conversation();
    await transportIs(a, "https");
    await transportIs(b, "https");
    expect(a.status.transports.find((t) => t.kind === "websocket")?.lastFailure).toBeDefined();
    for (let i = 1; i <= 10; i++) await a.send(chatId, `m${i}`);
    await waitUntil(() => toBob.length === 10, 15_000, "10 messages over HTTPS");

    wsPath.mode = "pass";
    await transportIs(a, "websocket");
    await transportIs(b, "websocket");
    for (let i = 11; i <= 20; i++) await a.send(chatId, `m${i}`);
    await waitUntil(() => toBob.length === 20, 15_000, "20 messages");
    expect(texts(toBob)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i + 1}`));
  });

  it("falls to HTTPS when WebSocket is reset after its upgrade, and when it goes silent", async () => {
    wsPath = await startSwitchProxy(server.url, "pass");
    const { a, b, chatId, toBob } = await conversation();
    await transportIs(a, "websocket");
    await a.send(chatId, "over websocket");

    wsPath.resetAfterBytes = 300; // the upgrade answer and the hello pass, then the link dies
    wsPath.mode = "reset-after";
    await a.send(chatId, "during the reset"); // the open WebSocket still carries it until reset
    // Kill the live WebSockets: the next ones are reset right after the upgrade.
    wsPath.mode = "refuse";
    wsPath.mode = "reset-after";
    await transportIs(a, "https");
    await transportIs(b, "https");
    await a.send(chatId, "over https");
    await waitUntil(() => toBob.length === 3, 20_000, "3 messages");

    // Silent: WebSocket works again, the ladder climbs back, then the path blackholes.
    wsPath.mode = "pass";
    await transportIs(a, "websocket");
    await transportIs(b, "websocket");
    wsPath.mode = "blackhole";
    await a.send(chatId, "into the silence");
    await transportIs(a, "https", 20_000);
    await transportIs(b, "https", 20_000);
    await waitUntil(() => toBob.length === 4, 20_000, "4 messages");
    expect(texts(toBob)).toEqual(["over websocket", "during the reset", "over https", "into the silence"]);
  });
});
