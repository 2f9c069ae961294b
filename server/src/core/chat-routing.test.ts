import { describe, expect, it } from "vitest";
import {
  RemessengerError,
  newId,
  newMessageId,
  ErrorCode,
  type SendMessageRequest,
  type SendMessageResponse,
} from "@remessenger/protocol";
import { ChatRouter, MAX_ROUTE_ATTEMPTS, ROUTE_RETRY_DELAYS_MS, type ShardDirectory } from "./chat-routing.ts";
import { type NodeInfo, NotOwnerError, type ShardRoute } from "./lease.ts";

const OTHER: NodeInfo = { nodeId: "other", address: "other:1" };
const DEVICE = { userId: "u", deviceId: "d" };
const ANSWER: SendMessageResponse = { seq: 7, duplicate: false, serverTimeMs: 1 };

function request(): SendMessageRequest {
  return { chatId: newId("chat"), messageId: newMessageId(), payload: new Uint8Array(1), devicePayloads: [] };
}

/** A directory whose answers a test scripts: `route` then `resolve`, one per call, the last repeated. */
function directory(routes: Array<ShardRoute | undefined>, resolutions: ShardRoute[]) {
  const calls = { forgotten: 0, lost: 0, forwardedResolves: 0 };
  const dir: ShardDirectory = {
    route: () => (routes.length > 1 ? routes.shift() : routes[0]),
    resolve: (_shard, isForwarded) => {
      if (isForwarded === true) calls.forwardedResolves += 1;
      const next = resolutions.length > 1 ? resolutions.shift() : resolutions[0];
      return next === undefined ? Promise.reject(new Error("no resolution")) : Promise.resolve(next);
    },
    tokenFor: () => 1,
    markLost: () => {
      calls.lost += 1;
    },
    forget: () => {
      calls.forgotten += 1;
    },
  };
  return { dir, calls };
}

function forwarder(answers: Array<() => Promise<SendMessageResponse>>) {
  const sent: NodeInfo[] = [];
  return {
    sent,
    forward: (node: NodeInfo) => {
      sent.push(node);
      const next = answers.length > 1 ? answers.shift() : answers[0];
      return next === undefined ? Promise.reject(new Error("no answer")) : next();
    },
  };
}

function sleeps() {
  const waited: number[] = [];
  return { waited, sleep: (ms: number) => (waited.push(ms), Promise.resolve()) };
}

describe("ChatRouter", () => {
  it("sends locally when this node holds the shard, and forwards to the holder otherwise", async () => {
    const local = directory([{ kind: "local", token: 3 }], []);
    const noForwards = forwarder([]);
    const router = new ChatRouter(local.dir, noForwards, sleeps().sleep);
    expect(await router.send(DEVICE, request(), () => Promise.resolve(ANSWER))).toBe(ANSWER);
    expect(noForwards.sent).toEqual([]);

    const remote = directory([{ kind: "remote", node: OTHER }], []);
    const link = forwarder([() => Promise.resolve(ANSWER)]);
    const forwarding = new ChatRouter(remote.dir, link, sleeps().sleep);
    expect(await forwarding.send(DEVICE, request(), () => Promise.reject(new Error("not here")))).toBe(ANSWER);
    expect(link.sent).toEqual([OTHER]);
    expect(forwarding.stats.forwarded).toBe(1);
  });

  it("routes again, after a pause, when the owner changed or is not known yet", async () => {
    // Nobody known, then an owner this node does not list yet, then the owner refuses, then it answers.
    const { dir, calls } = directory(
      [undefined],
      [
        { kind: "unavailable", reason: "is held by n2, which is not live yet" },
        { kind: "remote", node: OTHER },
        { kind: "remote", node: OTHER },
      ],
    );
    const link = forwarder([
      () => Promise.reject(new NotOwnerError(-1, "is not owned by other")),
      () => Promise.resolve(ANSWER),
    ]);
    const { waited, sleep } = sleeps();
    const router = new ChatRouter(dir, link, sleep);
    expect(await router.send(DEVICE, request(), () => Promise.reject(new Error("not here")))).toBe(ANSWER);
    expect(waited).toEqual(ROUTE_RETRY_DELAYS_MS.slice(0, 2));
    expect(calls.forgotten).toBe(2);
    expect(router.stats.rerouted).toBe(2);
  });

  it("gives up after MAX_ROUTE_ATTEMPTS with a retryable UNAVAILABLE, having waited out more than a lease tick", async () => {
    const { dir } = directory([undefined], [{ kind: "unavailable", reason: "is held by n2, which is not live yet" }]);
    const { waited, sleep } = sleeps();
    const router = new ChatRouter(dir, forwarder([]), sleep);
    const failure = await router
      .send(DEVICE, request(), () => Promise.resolve(ANSWER))
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RemessengerError);
    expect((failure as RemessengerError).code).toBe(ErrorCode.ERROR_CODE_UNAVAILABLE);
    expect(waited).toHaveLength(MAX_ROUTE_ATTEMPTS - 1);
    // Default lease TTL 5 s: a tick is 1.7 s.
    expect(waited.reduce((a, b) => a + b, 0)).toBeGreaterThan(5_000 / 3);
  });

  it("passes other errors through at once: a refused send is not routed again", async () => {
    const { dir } = directory([{ kind: "remote", node: OTHER }], []);
    const refused = new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such chat");
    const { waited, sleep } = sleeps();
    const router = new ChatRouter(dir, forwarder([() => Promise.reject(refused)]), sleep);
    await expect(router.send(DEVICE, request(), () => Promise.resolve(ANSWER))).rejects.toBe(refused);
    expect(waited).toEqual([]);
  });

  it("serves a forwarded send here or refuses it, never forwarding it on", async () => {
    const owner = directory([undefined], [{ kind: "local", token: 4 }]);
    const link = forwarder([]);
    const router = new ChatRouter(owner.dir, link, sleeps().sleep);
    expect(await router.acceptForwarded(request(), () => Promise.resolve(ANSWER))).toBe(ANSWER);
    expect(owner.calls.forwardedResolves).toBe(1);

    const stale = directory([{ kind: "remote", node: OTHER }], [{ kind: "unavailable", reason: "belongs to other" }]);
    const refusing = new ChatRouter(stale.dir, link, sleeps().sleep);
    await expect(refusing.acceptForwarded(request(), () => Promise.resolve(ANSWER))).rejects.toBeInstanceOf(
      NotOwnerError,
    );
    expect(link.sent).toEqual([]);
  });
});
