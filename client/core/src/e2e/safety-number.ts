/**
 * Safety numbers: what two users compare (read aloud, or scan as a QR code)
 * to know that no one sits between them. Each user's fingerprint covers the
 * identity keys of all their devices (sorted, so order does not matter) and
 * their user id, hashed 5,200 times with SHA-512 (Signal's numeric
 * fingerprint construction, so a brute-forced collision costs as much as
 * there). The number is both users' 30 digits, the lower fingerprint first,
 * so both users see the same 60 digits.
 */
import { base32nopad } from "@scure/base";
import { sha512 } from "@remessenger/protocol";

const ITERATIONS = 5200;
const VERSION = Uint8Array.of(0, 1);
const encoder = new TextEncoder();

export interface SafetyNumber {
  /** 60 digits in 12 groups of 5. */
  digits: string;
  /** A QR-friendly text (upper-case base32) carrying both fingerprints. */
  qr: string;
}

/** 30 bytes of a user's iterated fingerprint. */
export function userFingerprint(userId: string, identityKeys: readonly Uint8Array[]): Uint8Array {
  const sorted = [...identityKeys].sort(compare);
  const keys = new Uint8Array(sorted.reduce((n, k) => n + k.length, 0));
  let offset = 0;
  for (const key of sorted) {
    keys.set(key, offset);
    offset += key.length;
  }
  const id = encoder.encode(userId);
  let hash = join(VERSION, keys, id);
  for (let i = 0; i < ITERATIONS; i += 1) hash = sha512(join(hash, keys));
  return hash.slice(0, 30);
}

function digitsOf(fingerprint: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 30; i += 5) {
    let value = 0;
    for (let j = 0; j < 5; j += 1) value = value * 256 + (fingerprint[i + j] ?? 0);
    groups.push(String(value % 100_000).padStart(5, "0"));
  }
  return groups.join("");
}

export function safetyNumber(
  a: { userId: string; identityKeys: readonly Uint8Array[] },
  b: { userId: string; identityKeys: readonly Uint8Array[] },
): SafetyNumber {
  const fa = userFingerprint(a.userId, a.identityKeys);
  const fb = userFingerprint(b.userId, b.identityKeys);
  const [first, second] = digitsOf(fa) <= digitsOf(fb) ? [fa, fb] : [fb, fa];
  const digits = (digitsOf(first) + digitsOf(second)).replace(/(\d{5})(?=\d)/g, "$1 ");
  return { digits, qr: `REMESSENGER1${base32nopad.encode(join(first, second))}` };
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function join(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
