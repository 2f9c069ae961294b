/**
 * The CLI over the DNS tunnel, end to end on real processes: a user who can
 * only reach DNS joins with an invite, chats over plain DNS and DoH, keeps
 * going across a server restart, and gets clear errors for bad input. The
 * DoH endpoint refuses malformed HTTP requests with the right statuses, and
 * the gateway answers over TCP as over UDP.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type AnnouncedTunnel, announcedTunnel } from "../../scripts/harness/tunnel.ts";
import { DNS_TYPE_SOA, RCODE_NOERROR, decodeDnsMessage, encodeDnsQuery } from "@remessenger/protocol";
import { type SendResult, createDirectChat, initUser, linkDevice, profileRoot } from "./cli-fixtures.ts";

const ZONE = "t.example";
let server: TestServer;
let tunnel: AnnouncedTunnel;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer({
    extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "0"],
  });
  tunnel = announcedTunnel(server.logs);
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

function viaDns(): string[] {
  return ["--transport", "dns", "--resolver", `${tunnel.dns.host}:${tunnel.dns.port}`];
}

describe("remessenger over the DNS tunnel", () => {
  it("joins with an invite over plain DNS, chats over DNS and DoH, and survives a server restart", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const { invite, zone } = await runCliJson<{ invite: string; zone: string }>(alice.profile, ["invite"]);
    expect(zone).toBe(ZONE);
    expect(invite).toMatch(/^rmsg1\./);

    // Bob never touches the WebSocket: registering, creating the chat and sending all go through DNS.
    const bobProfile = profiles.profile("bob");
    const bob = {
      profile: bobProfile,
      ...(await runCliJson<{ userId: string; deviceId: string }>(bobProfile, [
        ...viaDns(),
        "init",
        "--name",
        "Bob",
        "--invite",
        invite,
      ])),
    };
    const chatId = (
      await runCliJson<{ chatId: string }>(bob.profile, [...viaDns(), "chat", "create", "--with", alice.userId])
    ).chatId;
    expect(await createDirectChat(alice, bob)).toBe(chatId);
    const sent = await runCliJson<SendResult>(bob.profile, [...viaDns(), "send", chatId, "hello over dns", "--wait"]);
    expect(sent).toMatchObject({ state: "sent", seq: 1 });

    const listen = startCli(alice.profile, ["--json", "--transport", "doh", "listen", "--exit-after", "2"]);
    await listen.next((line) => line.type === "message" && line.text === "hello over dns", 30_000);

    // The server restarts: the gateway's key is the same (it derives from the store's secret),
    // the tunnel sessions are gone; the clients notice (NXDOMAIN) and start new ones.
    await server.stop();
    await server.restart();
    const again = await runCliJson<SendResult>(bob.profile, [
      ...viaDns(),
      "send",
      chatId,
      "after the restart",
      "--wait",
    ]);
    expect(again).toMatchObject({ state: "sent", seq: 2 });
    const line = await listen.next((l) => l.type === "message" && l.text === "after the restart", 60_000);
    expect(line).toMatchObject({ seq: 2, sender: bob.userId });
    const exit = await listen.exited(30_000);
    expect(exit.code, listen.stderr()).toBe(0);
  }, 180_000);

  it("gives a linked device the tunnel too: it can go over DNS at once", async () => {
    const erin = await initUser(profiles.profile("erin"), server.url, "Erin");
    const laptop = await linkDevice(server.url, erin, profiles.profile("erin-laptop"), "Erin's laptop");
    const status = await runCliJson<{ tunnelZone?: string }>(laptop.profile, ["status"]);
    expect(status.tunnelZone).toBe(ZONE);
    const over = await runCliJson<{ connection: { state: string; transport: string } }>(laptop.profile, [
      ...viaDns(),
      "status",
    ]);
    expect(over.connection).toMatchObject({ state: "connected", transport: "dns" });
  }, 60_000);

  it("refuses a damaged invite and a tunnel the profile does not know, with a clear message and exit code 2", async () => {
    const bad = await runCli(profiles.profile("carol"), [
      "--transport",
      "dns",
      "init",
      "--name",
      "Carol",
      "--invite",
      "rmsg1.###",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--invite: the invite is damaged/);

    const plain = await startServer();
    try {
      const dave = await initUser(profiles.profile("dave"), plain.url, "Dave");
      const result = await runCli(dave.profile, ["--transport", "doh", "status"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/does not know a DNS tunnel/);
      const invite = await runCli(dave.profile, ["invite"]);
      expect(invite.code).toBe(2);
      expect(invite.stderr).toMatch(/announced no DNS tunnel/);
    } finally {
      await plain.cleanup();
    }
  }, 60_000);

  it("answers malformed DoH requests with HTTP errors and keeps serving", async () => {
    const url = `${server.url}/dns-query`;
    expect((await fetch(`${url}?dns=***`)).status).toBe(400);
    expect((await fetch(url)).status).toBe(400);
    expect((await fetch(url, { method: "PUT" })).status).toBe(405);
    expect((await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })).status).toBe(
      415,
    );
    expect(
      (
        await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/dns-message" },
          body: new Uint8Array(70_000),
        })
      ).status,
    ).toBe(413);
    const query = encodeDnsQuery({ id: 9, name: ZONE, type: DNS_TYPE_SOA });
    const ok = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/dns-message" },
      body: Buffer.from(query),
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("application/dns-message");
    expect(decodeDnsMessage(new Uint8Array(await ok.arrayBuffer())).rcode).toBe(RCODE_NOERROR);
  });

  it("answers over TCP, several queries on one connection", async () => {
    const socket = net.connect(tunnel.dns.port, tunnel.dns.host);
    const answers: number[] = [];
    let buffered = Buffer.alloc(0);
    const done = new Promise<void>((resolve, reject) => {
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          const length = buffered.readUInt16BE(0);
          answers.push(decodeDnsMessage(new Uint8Array(buffered.subarray(2, 2 + length))).id);
          buffered = buffered.subarray(2 + length);
          if (answers.length === 2) resolve();
        }
      });
      socket.on("error", reject);
      setTimeout(() => reject(new Error("no TCP answers")), 10_000);
    });
    for (const id of [1, 2]) {
      const query = encodeDnsQuery({ id, name: ZONE, type: DNS_TYPE_SOA });
      const header = Buffer.alloc(2);
      header.writeUInt16BE(query.length);
      socket.write(Buffer.concat([header, query]));
    }
    await done;
    socket.destroy();
    expect(answers.sort()).toEqual([1, 2]);
  });
});
