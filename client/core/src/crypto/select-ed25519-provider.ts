/**
 * Picks the Ed25519 provider at start-up: WebCrypto when this platform has a
 * working Ed25519 (checked against an RFC 8032 vector, not just feature
 * detection — some engines expose the name but sign differently or not at
 * all), otherwise the portable @noble/curves one.
 */
import { hex } from "@scure/base";
import type { Ed25519Provider } from "./device-signer.ts";
import { nobleEd25519 } from "./noble-ed25519.ts";
import { webCryptoEd25519 } from "./webcrypto-ed25519.ts";

// RFC 8032 §7.1, TEST 2: one-byte message.
const PROBE_SEED = hex.decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
const PROBE_MESSAGE = Uint8Array.of(0x72);
const PROBE_SIGNATURE =
  "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

let chosen: Promise<Ed25519Provider> | undefined;

/** The provider for this platform; probed once, then cached. */
export function selectEd25519Provider(): Promise<Ed25519Provider> {
  chosen ??= probe(webCryptoEd25519).then((isWorking) => (isWorking ? webCryptoEd25519 : nobleEd25519));
  return chosen;
}

/** Whether `provider` signs the RFC vector correctly here. */
export async function probe(provider: Ed25519Provider): Promise<boolean> {
  try {
    const signer = await provider.signerFromSeed(PROBE_SEED);
    return hex.encode(await signer.sign(PROBE_MESSAGE)) === PROBE_SIGNATURE;
  } catch {
    // No WebCrypto, or no Ed25519 in it: the answer is simply "no".
    return false;
  }
}
