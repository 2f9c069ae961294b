/**
 * A KeyVault whose wrapping key lives only in this object (a non-extractable
 * AES-256-GCM WebCrypto key), for tests and load generators: what it wraps is
 * lost with it, so no client keeps real keys in one. Output is laid out as
 * IndexedDbKeyVault's (IV ‖ ciphertext ‖ tag), and only the vault that wrapped
 * a secret unwraps it.
 */
import { type KeyVault, KeyVaultError } from "./key-vault.ts";

const IV_BYTES = 12;

export class MemoryKeyVault implements KeyVault {
  private readonly key: Promise<CryptoKey> = crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);

  async wrap(secret: Uint8Array): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await this.key, new Uint8Array(secret));
    const out = new Uint8Array(IV_BYTES + sealed.byteLength);
    out.set(iv);
    out.set(new Uint8Array(sealed), IV_BYTES);
    return out;
  }

  async unwrap(wrapped: Uint8Array): Promise<Uint8Array> {
    const iv = wrapped.slice(0, IV_BYTES);
    try {
      return new Uint8Array(
        await crypto.subtle.decrypt({ name: "AES-GCM", iv }, await this.key, wrapped.slice(IV_BYTES)),
      );
    } catch (cause) {
      // AES-GCM fails only on a tag that does not check: changed, or another vault's.
      throw new KeyVaultError("wrapped secret was changed or was not made by this vault", { cause });
    }
  }
}
