/**
 * Test devices on the real server: a registered identity with an in-memory
 * store, ready to build a ClientSession on.
 */
import {
  selectEd25519Provider,
  type DeviceSigner,
  type DeviceProfile,
  type ClientSessionOptions,
  type E2eKeyMaterial,
  MemoryClientStore,
  makeDeviceIdentity,
  ClientSession,
  registerNewDevice,
  webSocketTransportFactory,
} from "@remessenger/client-core";
import { selectX25519Provider, randomBytes } from "@remessenger/protocol";

export interface TestDevice {
  profile: DeviceProfile;
  signer: DeviceSigner;
  store: MemoryClientStore;
  /** Its end-to-end identity and storage key (what a key vault would hold). */
  e2e: E2eKeyMaterial;
}

export async function registerTestDevice(serverUrl: string, displayName: string): Promise<TestDevice> {
  const provider = await selectEd25519Provider();
  const signer = await provider.signerFromSeed(provider.generateSeed());
  const registered = await registerNewDevice({
    transports: webSocketTransportFactory({ serverUrl }),
    signer,
    displayName,
    timeoutMs: 10_000,
  });
  const profile: DeviceProfile = {
    serverUrl,
    userId: registered.userId,
    deviceId: registered.deviceId,
    displayName,
    registeredAtMs: registered.serverTimeMs,
  };
  const store = new MemoryClientStore();
  await store.saveProfile(profile);
  const identity = await makeDeviceIdentity(signer, await (await selectX25519Provider()).generateKeyPair());
  const device: TestDevice = { profile, signer, store, e2e: { identity, storageKey: randomBytes(32) } };
  // As `remessenger init` does: publish the prekey bundle, so others can start sessions at once.
  const session = sessionFor(device, { subscribe: false, sendOutbox: false });
  await session.start();
  try {
    await session.whenLoggedIn({ timeoutMs: 10_000 });
    await session.maintainPreKeys();
  } finally {
    await session.stop();
  }
  return device;
}

/** Fast timings so tests see reconnects and stalls in well under a second. */
export const FAST_TIMING = {
  connectTimeoutMs: 2_000,
  requestTimeoutMs: 3_000,
  pingIntervalMs: 200,
  pingTimeoutMs: 600,
  degradedAfterMs: 150,
  stableAfterMs: 1_000,
  backoff: { initialMs: 50, maxMs: 400 },
} as const;

export function sessionFor(device: TestDevice, options: Partial<ClientSessionOptions> = {}): ClientSession {
  return new ClientSession({
    profile: device.profile,
    signer: device.signer,
    store: device.store,
    e2e: device.e2e,
    timing: FAST_TIMING,
    ...options,
  });
}
