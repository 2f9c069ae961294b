/**
 * Padding of plaintexts to size buckets before encryption, so a ciphertext's
 * length tells little about the message: powers of two from 64 bytes to
 * 4 KiB, then whole 4 KiB blocks. ISO/IEC 7816-4 style: the content, one
 * 0x80 byte, zeros up to the bucket.
 */

const MIN_BUCKET = 64;
const LINEAR_FROM = 4096;

/** The padded size for `length` content bytes (always > length). */
export function paddedSize(length: number): number {
  const needed = length + 1;
  if (needed > LINEAR_FROM) return Math.ceil(needed / LINEAR_FROM) * LINEAR_FROM;
  let bucket = MIN_BUCKET;
  while (bucket < needed) bucket *= 2;
  return bucket;
}

export function pad(content: Uint8Array): Uint8Array {
  const out = new Uint8Array(paddedSize(content.length));
  out.set(content);
  out[content.length] = 0x80;
  return out;
}

/** The content; throws when the padding is malformed. */
export function unpad(padded: Uint8Array): Uint8Array {
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end -= 1;
  if (end < 0 || padded[end] !== 0x80) throw new Error("malformed padding");
  return padded.subarray(0, end);
}
