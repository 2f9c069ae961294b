import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeClientFrame, newMessageId, MAX_FRAME_BYTES, ChatKind, ErrorCode } from "@remessenger/protocol";
import { startServer, type TestServer } from "../../scripts/harness/server.ts";
import { FrameDriver, newDeviceKey } from "../../scripts/harness/frame-driver.ts";
import { MAX_BAD_FRAMES } from "../src/edge/frame-session.ts";

function errorCodes(driver: FrameDriver): ErrorCode[] {
  return driver.errors.flatMap((f) => (f.body.$case === "error" ? [f.body.value.code] : []));
}

describe("bad input on the WebSocket edge", () => {
  let server: TestServer;
  let bystander: FrameDriver;
  let talker: FrameDriver;
  let chatId: string;

  beforeAll(async () => {
    server = await startServer();
    // A healthy pair that keeps talking through every test: nothing here may disturb them.
    bystander = await FrameDriver.connect(server.url);
    talker = await FrameDriver.connect(server.url);
    const b = await bystander.register("bystander");
    await talker.register("talker");
    chatId = await talker.createDirectChat(b.userId);
    await bystander.subscribe();
  });

  afterAll(async () => {
    bystander.close();
    talker.close();
    await server.cleanup();
  });

  async function expectServerHealthy(): Promise<void> {
    const before = bystander.messages().length;
    const { seq } = await talker.send(chatId, "still here");
    await bystander.waitFor(() => bystander.messages().some((m) => m.seq === seq), "bystander delivery");
    expect(bystander.messages().length).toBe(before + 1);
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
  }

  it("answers random bytes with error frames and closes a peer that keeps sending garbage", async () => {
    const peer = await FrameDriver.connect(server.url);
    for (let i = 0; i < 200 && peer.closeCode === undefined; i++) {
      // Field 1 with wire type 7 cannot be protobuf: every one of these is a bad frame.
      peer.sendRaw(new Uint8Array([0x0f, ...randomBytes(1 + (i % 300))]));
    }
    expect(await peer.closed).toBe(1008);
    expect(errorCodes(peer).length).toBeGreaterThanOrEqual(MAX_BAD_FRAMES - 1);
    expect(new Set(errorCodes(peer))).toEqual(new Set([ErrorCode.ERROR_CODE_BAD_FRAME]));
    await expectServerHealthy();
  });

  it("survives fully random bytes of any shape without crashing", async () => {
    for (let round = 0; round < 5; round++) {
      const peer = await FrameDriver.connect(server.url);
      for (let i = 0; i < 40 && peer.closeCode === undefined; i++) peer.sendRaw(randomBytes(1 + ((i * 37) % 2000)));
      peer.close();
      await peer.closed;
    }
    await expectServerHealthy();
  });

  it("reports a truncated frame as BAD_FRAME and keeps the connection usable", async () => {
    const peer = await FrameDriver.connect(server.url);
    const whole = encodeClientFrame({
      requestId: 9,
      request: {
        $case: "sendMessage",
        value: { chatId, messageId: newMessageId(), payload: new Uint8Array(100), devicePayloads: [] },
      },
    });
    peer.sendRaw(whole.subarray(0, whole.length - 20));
    await peer.waitFor(() => errorCodes(peer).length === 1, "error frame");
    expect(errorCodes(peer)).toEqual([ErrorCode.ERROR_CODE_BAD_FRAME]);
    expect((await peer.call({ $case: "ping", value: { clientTimeMs: 5 } })).clientTimeMs).toBe(5);
    peer.close();
  });

  it("closes with 1009 on a frame over the size limit", async () => {
    const peer = await FrameDriver.connect(server.url);
    peer.sendRaw(new Uint8Array(MAX_FRAME_BYTES + 1));
    expect(await peer.closed).toBe(1009);
    await expectServerHealthy();
  });

  it("answers an unknown request case with UNIMPLEMENTED for that request id", async () => {
    const peer = await FrameDriver.connect(server.url);
    // request_id = 7, then field 99 (length-delimited, 2 bytes): a request kind from the future.
    peer.sendRaw(new Uint8Array([0x08, 0x07, 0x9a, 0x06, 0x02, 0x01, 0x02]));
    await peer.waitFor(() => peer.errors.length === 1, "error frame");
    expect(peer.errors[0]?.requestId).toBe(7);
    expect(errorCodes(peer)).toEqual([ErrorCode.ERROR_CODE_UNIMPLEMENTED]);
    peer.close();
  });

  it("answers text WebSocket messages with BAD_FRAME", async () => {
    const peer = await FrameDriver.connect(server.url);
    peer.socket.send("hello?");
    await peer.waitFor(() => peer.errors.length === 1, "error frame");
    expect(errorCodes(peer)).toEqual([ErrorCode.ERROR_CODE_BAD_FRAME]);
    peer.close();
  });

  it("refuses everything but login before login, then lets the same connection log in", async () => {
    const peer = await FrameDriver.connect(server.url);
    for (const request of [
      { $case: "createChat" as const, value: { kind: ChatKind.CHAT_KIND_GROUP, memberUserIds: [], title: "x" } },
      { $case: "subscribe" as const, value: {} },
      { $case: "listChats" as const, value: {} },
    ]) {
      const answer = await peer.request(request);
      expect(answer.body.$case === "error" && answer.body.value.code).toBe(ErrorCode.ERROR_CODE_UNAUTHENTICATED);
    }
    await peer.register("late");
    expect((await peer.call({ $case: "listChats", value: {} })).chats).toEqual([]);
    peer.close();
  });

  it("rejects a forged signature, a reused challenge and an unknown device", async () => {
    const peer = await FrameDriver.connect(server.url);
    const { nonce } = await peer.call({ $case: "getChallenge", value: {} });
    const key = newDeviceKey();
    const forged = await peer.request({
      $case: "register",
      value: { displayName: "mallory", identityKey: key.publicKey, nonce, signature: new Uint8Array(64) },
    });
    expect(forged.body.$case === "error" && forged.body.value.code).toBe(ErrorCode.ERROR_CODE_UNAUTHENTICATED);
    const reused = await peer.request({
      $case: "login",
      value: { deviceId: "d" + "a".repeat(26), nonce, signature: new Uint8Array(64) },
    });
    expect(reused.body.$case === "error" && reused.body.value.message).toMatch(/challenge/);
    const fresh = await peer.call({ $case: "getChallenge", value: {} });
    const unknown = await peer.request({
      $case: "login",
      value: { deviceId: "d" + "a".repeat(26), nonce: fresh.nonce, signature: new Uint8Array(64) },
    });
    expect(unknown.body.$case === "error" && unknown.body.value.code).toBe(ErrorCode.ERROR_CODE_UNAUTHENTICATED);
    peer.close();
  });

  it("answers requests about a chat the device is not in with NOT_FOUND, and bad fields with INVALID_ARGUMENT", async () => {
    const outsider = await FrameDriver.connect(server.url);
    await outsider.register("outsider");
    const code = async (request: Parameters<FrameDriver["request"]>[0]): Promise<ErrorCode | "ok"> => {
      const answer = await outsider.request(request);
      return answer.body.$case === "error" ? answer.body.value.code : "ok";
    };
    const send = (fields: Partial<{ chatId: string; messageId: Uint8Array; payload: Uint8Array }>) =>
      code({
        $case: "sendMessage",
        value: { chatId, messageId: newMessageId(), payload: new Uint8Array([1]), devicePayloads: [], ...fields },
      });
    expect(await send({})).toBe(ErrorCode.ERROR_CODE_NOT_FOUND);
    expect(await code({ $case: "getChat", value: { chatId } })).toBe(ErrorCode.ERROR_CODE_NOT_FOUND);
    expect(await code({ $case: "ack", value: { acks: [{ chatId, throughSeq: 1 }] } })).toBe(
      ErrorCode.ERROR_CODE_NOT_FOUND,
    );
    expect(await send({ chatId: "c" + "b".repeat(26) })).toBe(ErrorCode.ERROR_CODE_NOT_FOUND);
    expect(await send({ chatId: "not-a-chat" })).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    expect(await send({ messageId: new Uint8Array(5) })).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    expect(await send({ payload: new Uint8Array(0) })).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    expect(await send({ payload: new Uint8Array(200 * 1024) })).toBe(ErrorCode.ERROR_CODE_TOO_LARGE);
    expect(
      await code({
        $case: "createChat",
        value: { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: ["u" + "c".repeat(26)], title: "" },
      }),
    ).toBe(ErrorCode.ERROR_CODE_NOT_FOUND);
    expect(await code({ $case: "getUser", value: { userId: "nobody" } })).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    outsider.close();
    await expectServerHealthy();
  });
});
