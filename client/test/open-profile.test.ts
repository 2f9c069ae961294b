/**
 * Making and opening profiles through the client core against the real
 * server process, as every client does: a profile made in a MemoryClientStore
 * with its secrets in an in-memory KeyVault, opened again from those two as a
 * second process would, and messages sent and received on the reopened
 * profiles; a device linked to a user the same way; and a creation that could
 * not reach the server left half-made, detected at open and finished by the
 * next creation with the same keys. No mocks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type DeviceSecretsKeeper,
  MemoryClientStore,
  MemoryKeyVault,
  ErrorCode,
  RemessengerError,
  type Messenger,
  NoProfileError,
  createProfile,
  deviceKeysOf,
  encodeLinkCode,
  ensureDeviceSecrets,
  identityKeyText,
  openProfile,
  storedDeviceSecrets,
} from "@remessenger/client-core";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { waitForEvent } from "../../scripts/harness/wait.ts";
import { FAST_TIMING } from "./devices.ts";

/** What a device keeps between runs: its store and its vault (IndexedDB would keep both). */
interface Device {
  store: MemoryClientStore;
  vault: MemoryKeyVault;
}

let server: TestServer;
const running: Messenger[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

function newDevice(): Device {
  return { store: new MemoryClientStore(), vault: new MemoryKeyVault() };
}

/** A fresh keeper over the device's store and vault, as a process that just started makes one. */
function keeperOf(device: Device): DeviceSecretsKeeper {
  return storedDeviceSecrets(device.store, device.vault);
}

/** Makes the profile, then starts its messenger once to publish prekeys (what `init` does), and stops it. */
async function created(device: Device, displayName: string, join: Parameters<typeof createProfile>[0]["join"]) {
  const messenger = await createProfile({
    store: device.store,
    secrets: keeperOf(device),
    endpoints: { serverUrl: server.url },
    displayName,
    join,
    timeoutMs: 10_000,
    transport: "ws",
    messenger: { session: { subscribe: false, sendOutbox: false }, timing: FAST_TIMING },
  });
  expect(messenger.lifecycle.value).toBe("idle");
  await messenger.start();
  try {
    expect((await messenger.firstAttempt(10_000)).kind).toBe("connected");
    await messenger.publishPreKeys();
  } finally {
    await messenger.stop();
  }
  return messenger.profile;
}

async function reopened(device: Device): Promise<Messenger> {
  const messenger = await openProfile({
    store: device.store,
    secrets: keeperOf(device),
    transport: "ws",
    messenger: { timing: FAST_TIMING },
  });
  running.push(messenger);
  return messenger;
}

describe("profiles made and opened through the client core", () => {
  it("makes two profiles, opens them again from their stores and vaults, and they exchange messages", async () => {
    const aliceDevice = newDevice();
    const bobDevice = newDevice();
    const aliceProfile = await created(aliceDevice, "Alice", { kind: "register" });
    const bobProfile = await created(bobDevice, "Bob", { kind: "register" });
    expect(await aliceDevice.store.getProfile()).toEqual(aliceProfile);

    const alice = await reopened(aliceDevice);
    const bob = await reopened(bobDevice);
    expect(alice.profile).toEqual(aliceProfile);
    await Promise.all([alice.start(), bob.start()]);
    await bob.firstAttempt(10_000);

    const chat = await alice.openDirectChat(bobProfile.userId);
    const heard = waitForEvent(bob.events, "message", (m) => m.message.text === "hello from a reopened profile");
    await alice.send(chat.chatId, "hello from a reopened profile");
    expect((await heard).message.senderUserId).toBe(aliceProfile.userId);

    const replied = waitForEvent(alice.events, "message", (m) => m.message.text === "heard you" && !m.isOwnDevice);
    await bob.send(chat.chatId, "heard you");
    expect((await replied).message.chatId).toBe(chat.chatId);
  });

  it("links a second device with an approval, and the linked profile opens again as that user's", async () => {
    const firstDevice = newDevice();
    const firstProfile = await created(firstDevice, "Carol", { kind: "register" });
    const secondDevice = newDevice();
    // `link request`: the new device's keys are kept before anyone approves them.
    const keys = await deviceKeysOf(await ensureDeviceSecrets(keeperOf(secondDevice)));
    const first = await reopened(firstDevice);
    const approval = await first.approveLink(encodeLinkCode(keys.signer.publicKey));

    const linked = await created(secondDevice, "Carol's laptop", { kind: "link", approval });
    expect(linked.userId).toBe(firstProfile.userId);
    expect(linked.deviceId).not.toBe(firstProfile.deviceId);
    expect(linked.identityKey).toBe(identityKeyText(keys.signer.publicKey));
    expect((await reopened(secondDevice)).profile).toEqual(linked);
  });

  it("leaves a creation that cannot reach the server half-made, and the next one finishes it with the same keys", async () => {
    const device = newDevice();
    const unreachable = createProfile({
      store: device.store,
      secrets: keeperOf(device),
      // Port 9 on loopback: nothing listens, the connection is refused at once.
      endpoints: { serverUrl: "http://127.0.0.1:9" },
      displayName: "Dan",
      join: { kind: "register" },
      timeoutMs: 2_000,
      transport: "ws",
    });
    const failure = await unreachable.catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RemessengerError);
    expect([ErrorCode.ERROR_CODE_UNAVAILABLE, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED]).toContain(
      (failure as RemessengerError).code,
    );
    const opening = openProfile({ store: device.store, secrets: keeperOf(device) });
    await expect(opening).rejects.toBeInstanceOf(NoProfileError);
    await expect(opening).rejects.toMatchObject({ hasUnfinishedSecrets: true });
    const left = await deviceKeysOf(await ensureDeviceSecrets(keeperOf(device)));

    const profile = await created(device, "Dan", { kind: "register" });
    expect(profile.identityKey).toBe(identityKeyText(left.signer.publicKey));
    expect((await reopened(device)).profile).toEqual(profile);
  });
});
