/**
 * What an application gives a ClientSession: who the device is, its store
 * and keys, and the knobs (pipe, clock, timing, rotation, group window).
 */
import type { X25519Provider } from "@remessenger/protocol";
import type { TransportFactory } from "../connection/transport.ts";
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import type { MlKemProvider } from "../crypto/ml-kem.ts";
import type { SignedPreKeyPolicy } from "../e2e/prekey-upkeep.ts";
import type { DeviceIdentity } from "../e2e/session-setup.ts";
import type { GraceWindow } from "../group/epoch-window.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../runtime/logger.ts";
import type { ClientStore, DeviceProfile } from "../store/client-store.ts";
import type { SessionTiming } from "./session-timing.ts";

export interface ClientSessionOptions {
  /** Who this device is and where its server is. */
  profile: DeviceProfile;
  signer: DeviceSigner;
  store: ClientStore;
  /** The pipe; a WebSocket to `profile.serverUrl` when omitted. */
  transports?: TransportFactory;
  /** This device's end-to-end keys (from its key vault). */
  e2e: E2eKeyMaterial;
  clock?: Clock;
  /** Uniform in [0, 1); for backoff jitter. */
  random?: () => number;
  logger?: Logger;
  /** Receive pushes (default true). One-shot senders and status checks turn it off. */
  subscribe?: boolean;
  /** Send the outbox whenever connected (default true). */
  sendOutbox?: boolean;
  /** How long after a group's rotation its previous epoch is still accepted (time and messages). */
  groupWindow?: GraceWindow;
  timing?: Partial<SessionTiming>;
  /** Signed prekey rotation (weekly, replaced keys kept 30 days, when omitted). */
  signedPreKeys?: Partial<SignedPreKeyPolicy>;
}

export interface E2eKeyMaterial {
  identity: DeviceIdentity;
  /** 32 bytes that encrypt the E2E state (sessions, prekeys) in the store. */
  storageKey: Uint8Array;
  /** Providers; selected for the platform at start() when omitted. */
  x25519?: X25519Provider;
  ed25519?: Ed25519Provider;
  mlKem?: MlKemProvider;
  /** Test hook: every ratchet and prekey pair made (like SSLKEYLOGFILE). */
  onKeyMade?: (kind: string, pair: { publicKey: Uint8Array; privateKey: Uint8Array }) => void;
}
