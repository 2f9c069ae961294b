/**
 * Picks the X25519 provider at start-up: WebCrypto when this platform has a
 * working X25519 (checked against the RFC 7748 §6.1 vector, not just feature
 * detection), otherwise the portable @stablelib one.
 */
import { hex } from "@scure/base";
import { stablelibX25519 } from "./stablelib-x25519.ts";
import { webCryptoX25519 } from "./webcrypto-x25519.ts";
import type { X25519Provider } from "./x25519.ts";

// RFC 7748 §6.1: Alice's private key, Bob's public key, their shared secret.
const PROBE_PRIVATE = hex.decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
const PROBE_PUBLIC = hex.decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
const PROBE_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

let chosen: Promise<X25519Provider> | undefined;

/** The provider for this platform; probed once, then cached. */
export function selectX25519Provider(): Promise<X25519Provider> {
  chosen ??= probeX25519(webCryptoX25519).then((isWorking) => (isWorking ? webCryptoX25519 : stablelibX25519));
  return chosen;
}

/** Whether `provider` computes the RFC vector correctly here. */
export async function probeX25519(provider: X25519Provider): Promise<boolean> {
  try {
    return hex.encode(await provider.sharedSecret(PROBE_PRIVATE, PROBE_PUBLIC)) === PROBE_SHARED;
  } catch {
    // No WebCrypto, or no X25519 in it: the answer is simply "no".
    return false;
  }
}
