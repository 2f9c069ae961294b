import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../../../test/manual-clock.ts";
import { type MemoryPipe, memoryTransports } from "../../../test/memory-transport.ts";
import { RemessengerError, ErrorCode, type ServerPush } from "@remessenger/protocol";
import { Connection, MAX_BAD_SERVER_FRAMES } from "./connection.ts";
import { silentLogger } from "../runtime/logger.ts";

const HELLO = {
  requestId: 0,
  body: {
    $case: "hello" as const,
    value: { challenge: undefined, serverTimeMs: 1, serverVersion: "t", maxFrameBytes: 1, tunnel: undefined },
  },
};

async function opened() {
  const clock = new ManualClock();
  const transports = memoryTransports();
  const pushes: ServerPush[] = [];
  const closes: string[] = [];
  const opening = Connection.open(
    {
      transports,
      clock,
      logger: silentLogger,
      onPush: (push) => pushes.push(push),
      onClose: (reason) => closes.push(reason.reason),
    },
    { signal: new AbortController().signal, timeoutMs: 1_000 },
  );
  await settle();
  const pipe = transports.pipes[0] as MemoryPipe;
  pipe.push(HELLO);
  const { connection, hello } = await opening;
  return { clock, pipe, connection, hello, pushes, closes };
}

describe("Connection", () => {
  it("opens once the server's hello arrived", async () => {
    const { hello, connection } = await opened();
    expect(hello.serverVersion).toBe("t");
    expect(connection.isOpen).toBe(true);
  });

  it("gives up and closes when the first frame is not a hello", async () => {
    const clock = new ManualClock();
    const transports = memoryTransports();
    const opening = Connection.open(
      { transports, clock, logger: silentLogger, onPush: () => undefined, onClose: () => undefined },
      { signal: new AbortController().signal, timeoutMs: 1_000 },
    );
    await settle();
    const pipe = transports.pipes[0] as MemoryPipe;
    pipe.push({ requestId: 0, body: { $case: "ping", value: { clientTimeMs: 0, serverTimeMs: 0 } } });
    await expect(opening).rejects.toThrow(/closed/);
    expect(pipe.closeReason?.reason).toMatch(/expected hello/);
  });

  it("fails with DEADLINE_EXCEEDED when no hello comes in time", async () => {
    const clock = new ManualClock();
    const transports = memoryTransports();
    const opening = Connection.open(
      { transports, clock, logger: silentLogger, onPush: () => undefined, onClose: () => undefined },
      { signal: new AbortController().signal, timeoutMs: 1_000 },
    );
    const failure = expect(opening).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED });
    await clock.advance(1_000);
    await failure;
    expect(transports.pipes[0]?.isClosed).toBe(true);
  });

  it("matches answers to requests by id, in any order", async () => {
    const { pipe, connection } = await opened();
    const first = connection.request("ping", { clientTimeMs: 1 }, { timeoutMs: 1_000 });
    const second = connection.request("getChallenge", {}, { timeoutMs: 1_000 });
    await settle();
    const [ping, challenge] = pipe.received;
    expect(ping?.requestId).not.toBe(challenge?.requestId);
    pipe.push({
      requestId: challenge?.requestId ?? 0,
      body: { $case: "getChallenge", value: { nonce: new Uint8Array(3), expiresAtMs: 9 } },
    });
    pipe.push({
      requestId: ping?.requestId ?? 0,
      body: { $case: "ping", value: { clientTimeMs: 1, serverTimeMs: 5 } },
    });
    expect(await first).toEqual({ clientTimeMs: 1, serverTimeMs: 5 });
    expect((await second).expiresAtMs).toBe(9);
  });

  it("turns an error frame into a RemessengerError with the server's code and retry hint", async () => {
    const { pipe, connection } = await opened();
    const request = connection.request("listChats", {}, { timeoutMs: 1_000 });
    await settle();
    pipe.push({
      requestId: pipe.received[0]?.requestId ?? 0,
      body: {
        $case: "error",
        value: {
          code: ErrorCode.ERROR_CODE_RATE_LIMITED,
          message: "slow down",
          retryAfterMs: 700,
          devicesChanged: undefined,
        },
      },
    });
    const error = await request.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemessengerError);
    expect(error).toMatchObject({ code: ErrorCode.ERROR_CODE_RATE_LIMITED, message: "slow down", retryAfterMs: 700 });
  });

  it("rejects an answer of the wrong kind", async () => {
    const { pipe, connection } = await opened();
    const request = connection.request("listChats", {}, { timeoutMs: 1_000 });
    await settle();
    pipe.push({
      requestId: pipe.received[0]?.requestId ?? 0,
      body: { $case: "ping", value: { clientTimeMs: 0, serverTimeMs: 0 } },
    });
    await expect(request).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_BAD_FRAME });
  });

  it("times a request out at its deadline and ignores the late answer", async () => {
    const { pipe, connection, clock } = await opened();
    const request = connection.request("ping", { clientTimeMs: 1 }, { timeoutMs: 500 });
    const failure = expect(request).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED });
    await clock.advance(500);
    await failure;
    expect(pipe.received).toHaveLength(1);
    pipe.push({
      requestId: pipe.received[0]?.requestId ?? 0,
      body: { $case: "ping", value: { clientTimeMs: 1, serverTimeMs: 2 } },
    });
    expect(connection.isOpen).toBe(true);
  });

  it("rejects waiting requests when the pipe drops, and reports the close once", async () => {
    const { pipe, connection, closes } = await opened();
    const request = connection.request("ping", { clientTimeMs: 1 }, { timeoutMs: 1_000 });
    pipe.drop("network gone");
    await expect(request).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_UNAVAILABLE });
    expect(closes).toEqual(["network gone"]);
  });

  it("hands pushes up in order", async () => {
    const { pipe, pushes } = await opened();
    for (const pushed of [1, 2]) {
      pipe.push({
        requestId: 0,
        body: { $case: "push", value: { push: { $case: "syncComplete", value: { pushed, serverTimeMs: 0 } } } },
      });
    }
    expect(pushes.map((p) => (p.push?.$case === "syncComplete" ? p.push.value.pushed : 0))).toEqual([1, 2]);
  });

  it("closes after too many undecodable frames", async () => {
    const { pipe } = await opened();
    for (let i = 0; i < MAX_BAD_SERVER_FRAMES; i++) pipe.pushBytes(Uint8Array.of(0xff, 0xff, 0xff));
    expect(pipe.closeReason?.reason).toMatch(/undecodable/);
  });
});
