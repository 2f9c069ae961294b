/**
 * Prekey stock on a real server: each one-time prekey is handed out once, the
 * login tells the device when fewer than the low-water mark are left, and the
 * device publishes more by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { PREKEY_BATCH } from "@remessenger/client-core";
import { PREKEY_LOW_WATER } from "@remessenger/protocol";
import { registerTestDevice, sessionFor } from "./devices.ts";
import { waitUntil } from "../../scripts/harness/wait.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

describe("prekey stock", () => {
  it("refills the one-time prekeys when the login says the stock is below low water", async () => {
    const bob = await registerTestDevice(server.url, "Bob");
    const alice = await registerTestDevice(server.url, "Alice");
    const a = sessionFor(alice, { subscribe: false, sendOutbox: false });
    await a.start();
    try {
      const seen = new Set<number>();
      const take = PREKEY_BATCH - PREKEY_LOW_WATER + 5;
      for (let i = 0; i < take; i += 1) {
        const { bundles } = await a.request(
          "getPreKeyBundles",
          { userId: bob.profile.userId, deviceIds: [] },
          { timeoutMs: 5_000 },
        );
        const id = bundles[0]?.oneTimePreKey?.keyId;
        expect(id).toBeDefined();
        expect(seen.has(id ?? -1)).toBe(false);
        seen.add(id ?? -1);
      }
    } finally {
      await a.stop();
    }
    // Bob logs in: the answer says the stock is low, and the session publishes more.
    const b = sessionFor(bob, { subscribe: false, sendOutbox: false });
    await b.start();
    try {
      await waitUntil(
        async () => {
          const { bundles } = await b.request(
            "getPreKeyBundles",
            { userId: bob.profile.userId, deviceIds: [bob.profile.deviceId] },
            { timeoutMs: 5_000 },
          );
          // Each look takes a key; ids beyond the first batch (1: signed, 2: PQ, 3..52) show the refill arrived.
          return (bundles[0]?.oneTimePreKey?.keyId ?? 0) > PREKEY_BATCH + 2;
        },
        15_000,
        "a refilled one-time prekey",
      );
    } finally {
      await b.stop();
    }
  });
});
