/**
 * The ProfileStore port: who this device is and where its server is. One
 * profile per store; saving replaces it whole.
 */

/** Who this device is, and where its server is. */
export interface DeviceProfile {
  serverUrl: string;
  userId: string;
  deviceId: string;
  displayName: string;
  registeredAtMs: number;
  /**
   * base64url of this device's Ed25519 identity key, so a profile can tell its own secrets from
   * another device's; absent in profiles saved before it was kept (the first open records it).
   */
  identityKey?: string;
  /** The server's DNS tunnel, learned at init (hello) or from an invite; absent when it has none. */
  tunnel?: { zone: string; /** base64url of the gateway's X25519 key */ publicKey: string };
  /** DoH resolvers the tunnel goes through (absent: the server's own /dns-query). */
  dohUrls?: string[];
  /** The plain-DNS resolver of the tunnel (absent: the system's). */
  resolver?: { host: string; port: number };
}

export interface ProfileStore {
  getProfile(): Promise<DeviceProfile | undefined>;
  saveProfile(profile: DeviceProfile): Promise<void>;
}
