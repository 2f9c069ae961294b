/**
 * The CLI's default `--transport auto` on real processes: the profile
 * remembers the resolver given at init, `status --watch` shows the ladder
 * falling from WebSocket to the DNS tunnel when the server's TCP port turns
 * refusing (WebSocket, HTTPS and the server's own DoH all go through it), a
 * message sent meanwhile arrives once, and the watch shows the climb back to
 * WebSocket once the port heals.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type JsonLine, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type SwitchProxy, startSwitchProxy } from "../../scripts/harness/switch-proxy.ts";
import { type AnnouncedTunnel, announcedTunnel } from "../../scripts/harness/tunnel.ts";
import { type SendResult, createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

const ZONE = "t.example";
let server: TestServer;
let tunnel: AnnouncedTunnel;
let tcpPath: SwitchProxy;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer({
    extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "0"],
  });
  tunnel = announcedTunnel(server.logs);
  tcpPath = await startSwitchProxy(server.url);
});

afterAll(async () => {
  await tcpPath.close();
  await server.cleanup();
  profiles.dispose();
});

const connectedOver =
  (transport: string) =>
  (line: JsonLine): boolean =>
    line["type"] === "connection" && line["state"] === "connected" && line["transport"] === transport;

it("falls from WebSocket to plain DNS when the server's port refuses, and climbs back when it heals", async () => {
  const resolver = `${tunnel.dns.host}:${tunnel.dns.port}`;
  const aliceProfile = profiles.profile("alice");
  const alice = {
    profile: aliceProfile,
    ...(await runCliJson<{ userId: string; deviceId: string }>(aliceProfile, [
      "--server",
      tcpPath.url,
      "--resolver",
      resolver,
      "init",
      "--name",
      "Alice",
    ])),
  };
  const bob = await initUser(profiles.profile("bob"), server.url, "Bob");
  const chatId = await createDirectChat(alice, bob);

  // Remembered: no flag from here on names the resolver.
  const status = await runCliJson(alice.profile, ["status"]);
  expect(status).toMatchObject({ server: tcpPath.url, resolver: resolver, tunnelZone: ZONE });
  expect((status["connection"] as { transport: string }).transport).toBe("websocket");

  const watch = startCli(alice.profile, ["--json", "--log-level", "info", "status", "--watch"], {
    timeoutMs: 120_000,
  });
  const listen = startCli(bob.profile, ["--json", "listen"], { timeoutMs: 120_000 });
  try {
    await watch.next(connectedOver("websocket"), 20_000);

    tcpPath.mode = "refuse";
    const onDns = await watch.next(connectedOver("dns"), 60_000);
    // The rungs above say why they are not used; DoH (through the same port) may have lost the race
    // before failing, but it never worked.
    const rungs = onDns["transports"] as Array<{
      kind: string;
      failures: number;
      lastFailure?: string;
      lastSuccessAtMs?: number;
    }>;
    expect(rungs.map((r) => r.kind)).toEqual(["websocket", "https", "doh", "dns"]);
    for (const rung of rungs.slice(0, 2)) {
      expect(rung.failures).toBeGreaterThan(0);
      expect(rung.lastFailure).toBeTruthy();
    }
    expect(rungs[2]?.lastSuccessAtMs).toBeUndefined();

    const sent = await runCliJson<SendResult>(alice.profile, ["send", chatId, "through the tunnel", "--wait"], {
      timeoutMs: 60_000,
    });
    expect(sent.state).toBe("sent");
    const received = await listen.next((l) => l["type"] === "message", 30_000);
    expect(received).toMatchObject({ chatId, text: "through the tunnel", sender: alice.userId });

    tcpPath.mode = "pass";
    await watch.next(connectedOver("websocket"), 60_000);
    // Every change was also logged, with the reason for leaving WebSocket.
    const changes = watch
      .stderr()
      .split("\n")
      .filter((line) => line.includes('"connection state changed"'))
      .map((line) => JSON.parse(line) as { state: string; transport?: string; reason?: string });
    expect(changes.some((c) => c.state === "connected" && c.transport === "dns")).toBe(true);
    expect(changes.some((c) => c.state !== "connected" && c.reason !== undefined && c.reason.length > 0)).toBe(true);
    const after = await runCliJson<SendResult>(alice.profile, ["send", chatId, "back on the websocket", "--wait"]);
    expect(after.seq).toBe((sent.seq ?? 0) + 1);
    await listen.next((l) => l["type"] === "message" && l["text"] === "back on the websocket", 30_000);
    expect(listen.lines.filter((l) => l["type"] === "message")).toHaveLength(2);
  } finally {
    await Promise.all([watch.stop(), listen.stop()]);
  }
}, 240_000);
