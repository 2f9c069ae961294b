/**
 * The CLI against several nodes of one deployment (`--server A,B`, two nodes
 * sharing one Redis): when the node a running `listen` is connected to is
 * killed (kill -9), it reconnects to the other by itself and gets everything,
 * once and in order; a `send` whose first node is down goes through the next.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type JsonLine, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type RunningRedis, startRedis } from "../../scripts/harness/redis.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type SendResult, createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

let redis: RunningRedis;
const nodes: TestServer[] = [];
const profiles = profileRoot();

beforeAll(async () => {
  redis = await startRedis();
  for (const nodeId of ["a", "b"]) {
    // A short lease, so the dead node's chats move within a second or two.
    nodes.push(await startServer({ redisUrl: redis.url, extraArgs: ["--node-id", nodeId, "--lease-ttl-ms", "1500"] }));
  }
});

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.cleanup()));
  await redis.stop();
  profiles.dispose();
});

function node(index: number): TestServer {
  const found = nodes[index];
  if (found === undefined) throw new Error(`no node ${index}`);
  return found;
}

describe("remessenger CLI with several server URLs", () => {
  it("keeps a running listen delivering, once and in order, after its node is killed", async () => {
    const servers = `${node(0).url},${node(1).url}`;
    const alice = await initUser(profiles.profile("alice"), servers, "Alice");
    const bob = await initUser(profiles.profile("bob"), servers, "Bob");
    const chatId = await createDirectChat(bob, alice);
    const send = (text: string) => runCliJson<SendResult>(bob.profile, ["send", "--wait", chatId, text]);
    const isMessage = (seq: number) => (line: JsonLine) => line.type === "message" && line.seq === seq;

    const listen = startCli(alice.profile, ["--json", "listen"]);
    try {
      await listen.next((line) => line.type === "connection" && line.state === "connected", 30_000);
      expect(await send("before")).toMatchObject({ state: "sent", seq: 1 });
      await listen.next(isMessage(1), 30_000);

      await node(0).kill();
      // Bob's send starts at the dead node and goes through the other one.
      expect(await send("after 1")).toMatchObject({ state: "sent", seq: 2 });
      expect(await send("after 2")).toMatchObject({ state: "sent", seq: 3 });
      await listen.next(isMessage(3), 60_000);

      const received = listen.lines.filter((line) => line.type === "message");
      expect(received.map((line) => [line.seq, line.text])).toEqual([
        [1, "before"],
        [2, "after 1"],
        [3, "after 2"],
      ]);
      // Alice's listen did reconnect: a connected state after the kill.
      const states = listen.lines.filter((line) => line.type === "connection").map((line) => line.state);
      expect(states.lastIndexOf("connected")).toBeGreaterThan(states.indexOf("connected"));
    } finally {
      expect((await listen.stop()).code).toBe(0);
    }
  });
});
