/** The E2eStateStore contract: every ClientStore adapter runs it (client-store-contract.ts). */
import { describe, expect, it } from "vitest";
import { StaleE2eStateError } from "./e2e-state-store.ts";
import { blob, type OpenStoreFixture, put, useStoreFixtures } from "./store-contract-fixture.ts";

export function e2eStateStoreContract(name: string, open: OpenStoreFixture): void {
  describe(`E2eStateStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

    it("versions E2E records and applies a write set all or nothing", async () => {
      const { store } = await fresh();
      await store.writeE2e([put("session/d1", 0, 1), put("prekeys", 0, 2)]);
      const read = await store.readE2e(["session/d1", "prekeys", "session/d2"]);
      expect([...read.entries()].sort()).toEqual([
        ["prekeys", { version: 1, value: blob(2) }],
        ["session/d1", { version: 1, value: blob(1) }],
      ]);
      // One stale write spoils the set: nothing of it is applied.
      await expect(store.writeE2e([put("session/d1", 1, 3), put("prekeys", 0, 4)])).rejects.toBeInstanceOf(
        StaleE2eStateError,
      );
      expect((await store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 1, value: blob(1) });
      await store.writeE2e([{ key: "prekeys", expectedVersion: 1, value: undefined }, put("session/d2", 0, 5)]);
      expect(await store.listE2eKeys("session/")).toEqual(["session/d1", "session/d2"]);
      expect(await store.listE2eKeys("prekeys")).toEqual([]);
    });

    it("sees another handle's E2E writes and refuses a write based on what it replaced", async () => {
      const fixture = await fresh();
      if (fixture.openSibling === undefined) return; // single-handle adapter
      const sibling = await fixture.openSibling();
      try {
        await fixture.store.writeE2e([put("session/d1", 0, 1)]);
        await sibling.writeE2e([put("session/d1", 1, 2)]);
        await expect(fixture.store.writeE2e([put("session/d1", 1, 3)])).rejects.toBeInstanceOf(StaleE2eStateError);
        expect((await fixture.store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 2, value: blob(2) });
      } finally {
        await sibling.close();
      }
    });
  });
}
