/** The ProfileStore contract: every ClientStore adapter runs it (client-store-contract.ts). */
import { describe, expect, it } from "vitest";
import { type OpenStoreFixture, useStoreFixtures } from "./store-contract-fixture.ts";

export function profileStoreContract(name: string, open: OpenStoreFixture): void {
  describe(`ProfileStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

    it("keeps the profile", async () => {
      const { store } = await fresh();
      expect(await store.getProfile()).toBeUndefined();
      const profile = { serverUrl: "http://x", userId: "u1", deviceId: "d1", displayName: "Ann", registeredAtMs: 3 };
      await store.saveProfile(profile);
      expect(await store.getProfile()).toEqual(profile);
      await store.saveProfile({ ...profile, serverUrl: "http://y" });
      expect((await store.getProfile())?.serverUrl).toBe("http://y");
    });
  });
}
