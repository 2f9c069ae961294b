/**
 * Multi-device and verification through the CLI on a real server: a user
 * links a second device (approved by the first), and every message is
 * encrypted for each of the recipient's devices and the sender's other
 * devices; both users see the same safety number.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

async function received(profile: string, count: number): Promise<Array<Record<string, unknown>>> {
  const listen = startCli(profile, ["--json", "listen", "--exit-after", String(count)]);
  const exit = await listen.exited(30_000);
  expect(exit.code, listen.stderr()).toBe(0);
  return listen.lines.filter((l) => l.type === "message");
}

describe("linked devices and safety numbers", () => {
  it("delivers to every device of the recipient and the sender's other devices, after a link approved by a device", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-phone"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    expect((await runCli(alice.profile, ["send", chatId, "before the laptop", "--wait"])).code).toBe(0);
    expect((await received(bob.profile, 1))[0]?.text).toBe("before the laptop");

    const laptop = profiles.profile("bob-laptop");
    const { linkCode } = await runCliJson<{ linkCode: string }>(laptop, ["--server", server.url, "link", "request"]);
    // Never taken for an option: bare base64url keys start with "-" one time in 64.
    expect(linkCode).toMatch(/^rmlink1\.[\w-]{43}$/);
    const { approval } = await runCliJson<{ approval: string }>(bob.profile, ["link", "approve", linkCode]);
    const linked = await runCliJson<{ userId: string; deviceId: string }>(laptop, [
      "link",
      "finish",
      approval,
      "--name",
      "Bob's laptop",
    ]);
    expect(linked.userId).toBe(bob.userId);
    expect(linked.deviceId).not.toBe(bob.deviceId);

    // Alice's client refreshes Bob's devices and trusts the laptop through the phone's approval.
    expect((await runCli(alice.profile, ["send", chatId, "to both of you", "--wait"])).code).toBe(0);
    expect((await received(bob.profile, 1))[0]).toMatchObject({ text: "to both of you", state: "received" });
    expect((await received(laptop, 1))[0]).toMatchObject({ text: "to both of you", state: "received" });

    // The laptop writes: Alice reads it, and Bob's phone gets its copy too.
    expect((await runCli(laptop, ["send", chatId, "from the laptop", "--wait"])).code).toBe(0);
    expect((await received(alice.profile, 1))[0]).toMatchObject({
      text: "from the laptop",
      senderDevice: linked.deviceId,
    });
    expect((await received(bob.profile, 1))[0]).toMatchObject({ text: "from the laptop", state: "received" });

    // The same safety number on both sides, covering all of Bob's devices; nothing changed, nothing blocks.
    const fromAlice = await runCliJson<{ safetyNumber: string; status: string; devices: unknown[] }>(alice.profile, [
      "verify",
      bob.userId,
    ]);
    const fromBob = await runCliJson<{ safetyNumber: string; status: string }>(bob.profile, ["verify", alice.userId]);
    expect(fromAlice.safetyNumber).toMatch(/^(\d{5} ){11}\d{5}$/);
    expect(fromAlice.safetyNumber).toBe(fromBob.safetyNumber);
    expect(fromAlice.status).toBe("trusted");
    expect(fromAlice.devices).toHaveLength(2);
  }, 120_000);

  it("refuses a forged approval and a malformed link code, and links nothing", async () => {
    const carol = await initUser(profiles.profile("carol"), server.url, "Carol");
    const stranger = profiles.profile("stranger");
    const { linkCode } = await runCliJson<{ linkCode: string }>(stranger, ["--server", server.url, "link", "request"]);
    expect((await runCli(carol.profile, ["link", "approve", "not-a-code!"])).code).toBe(2);
    const { approval } = await runCliJson<{ approval: string }>(carol.profile, ["link", "approve", linkCode]);
    // Flip one character of the signature inside the approval.
    const json = JSON.parse(Buffer.from(approval, "base64url").toString()) as { s: string };
    json.s = (json.s.startsWith("A") ? "B" : "A") + json.s.slice(1);
    const forged = Buffer.from(JSON.stringify(json)).toString("base64url");
    const result = await runCli(stranger, ["--json", "link", "finish", forged, "--name", "x"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/PERMISSION_DENIED|not signed/);
    const me = await runCliJson<{ devices: unknown[] }>(carol.profile, ["verify", carol.userId]);
    expect(me.devices).toHaveLength(1);
  }, 60_000);
});
