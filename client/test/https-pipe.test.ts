/**
 * The HTTPS pipe end to end: client sessions on the real server that speak
 * only plain HTTP requests (no WebSocket), through delivery, a server crash
 * and bad input on the pipe's routes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import {
  type ClientSession,
  type ReceivedMessageEvent,
  contentText,
  httpsTransportFactory,
  pipeUrl,
} from "@remessenger/client-core";
import { ChatKind, PipeFrames, PipeOpened, encodeClientFrame, decodeServerFrame } from "@remessenger/protocol";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent, waitUntil } from "../../scripts/harness/wait.ts";

let server: TestServer;
const sessions: ClientSession[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

async function overHttps(device: TestDevice): Promise<ClientSession> {
  const session = sessionFor(device, { transports: httpsTransportFactory({ serverUrl: server.url }) });
  sessions.push(session);
  await session.start();
  return session;
}

function collect(session: ClientSession): ReceivedMessageEvent[] {
  const seen: ReceivedMessageEvent[] = [];
  session.events.on("message", (event) => seen.push(event));
  return seen;
}

describe("the HTTPS pipe", () => {
  it("carries a conversation both ways, in order, each message once", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const bob = await registerTestDevice(server.url, "Bob");
    const a = await overHttps(alice);
    const b = await overHttps(bob);
    expect(a.status.transport).toBe("https");
    const toBob = collect(b);
    const toAlice = collect(a);
    const { chat } = await a.request(
      "createChat",
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [bob.profile.userId], title: "" },
      { timeoutMs: 5_000 },
    );
    const chatId = chat?.chatId ?? "";
    for (let i = 1; i <= 30; i++) {
      await a.send(chatId, `a${i}`);
      await b.send(chatId, `b${i}`);
    }
    await waitUntil(() => toBob.filter((e) => !e.isOwnDevice).length === 30, 15_000, "30 messages at Bob");
    await waitUntil(() => toAlice.filter((e) => !e.isOwnDevice).length === 30, 15_000, "30 messages at Alice");
    const bobSaw = toBob.filter((e) => !e.isOwnDevice).map((e) => contentText(e.message.content));
    expect(bobSaw).toEqual(Array.from({ length: 30 }, (_, i) => `a${i + 1}`));
    const seqs = toBob.map((e) => e.message.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
  });

  it("reconnects by itself after the server is SIGKILLed and delivers what was sent meanwhile", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const bob = await registerTestDevice(server.url, "Bob");
    const a = await overHttps(alice);
    const b = await overHttps(bob);
    const toBob = collect(b);
    const { chat } = await a.request(
      "createChat",
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [bob.profile.userId], title: "" },
      { timeoutMs: 5_000 },
    );
    const chatId = chat?.chatId ?? "";
    await a.send(chatId, "before");
    await waitForEvent(b.events, "message", (e) => contentText(e.message.content) === "before", 10_000);
    await server.kill();
    await a.send(chatId, "during"); // queued in Alice's outbox while the server is down
    await server.restart();
    await waitForEvent(b.events, "message", (e) => contentText(e.message.content) === "during", 20_000);
    expect(toBob.map((e) => contentText(e.message.content))).toEqual(["before", "during"]);
  });

  it("answers bad requests on its routes with HTTP errors and stays up", async () => {
    const base = pipeUrl(server.url);
    expect((await fetch(`${base}/AAAAAAAAAAAAAAAAAAAAAA/down`)).status).toBe(404);
    expect((await fetch(base, { method: "GET" })).status).toBe(405);
    const opened = PipeOpened.decode(new Uint8Array(await (await fetch(base, { method: "POST" })).arrayBuffer()));
    const pipe = `${base}/${opened.pipeId}`;
    expect((await fetch(`${pipe}/up`, { method: "POST", body: new Uint8Array([0xff, 0xff, 0xff]) })).status).toBe(400);
    expect((await fetch(`${pipe}/up`, { method: "POST", body: new Uint8Array(2 * 1024 * 1024) })).status).toBe(413);

    // A frame that is no frame gets an error frame back on the download, like on a WebSocket.
    const garbage = PipeFrames.encode({
      frames: [new Uint8Array([0x0f, 1, 2])],
      closed: false,
      closeCode: 0,
      closeReason: "",
    }).finish();
    const ping = encodeClientFrame({ requestId: 3, request: { $case: "ping", value: { clientTimeMs: 42 } } });
    const both = PipeFrames.encode({
      frames: [garbage.subarray(0, 0), ping],
      closed: false,
      closeCode: 0,
      closeReason: "",
    });
    expect((await fetch(`${pipe}/up`, { method: "POST", body: garbage })).status).toBe(204);
    expect((await fetch(`${pipe}/up`, { method: "POST", body: both.finish() })).status).toBe(204);
    const cases: string[] = [];
    for (let polls = 0; polls < 5 && !cases.includes("ping"); polls++) {
      const down = PipeFrames.decode(new Uint8Array(await (await fetch(`${pipe}/down`)).arrayBuffer()));
      for (const frame of down.frames) cases.push(decodeServerFrame(frame).body.$case);
    }
    expect(cases).toEqual(["hello", "error", "error", "ping"]);
    expect((await fetch(pipe, { method: "DELETE" })).status).toBe(204);
    expect((await fetch(`${pipe}/down`)).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});
