/**
 * A small least-recently-used map from a key's raw bytes to its imported
 * node:crypto KeyObject. Importing costs OpenSSL more than many operations
 * with the key (X25519: about half an agreement; an ML-KEM-768 secret key:
 * more than two decapsulations), and the same keys come back: our identity,
 * prekeys and last-resort PQ key, a contact's identity key, each new ratchet
 * key twice. Only the import is saved; every operation still runs in full.
 */
import type { KeyObject } from "node:crypto";

export class KeyObjectCache {
  private readonly map = new Map<string, KeyObject>();
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** The KeyObject for `raw`, made by `make` when it is not cached. */
  get(raw: Uint8Array, make: () => KeyObject): KeyObject {
    const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("latin1");
    let key = this.map.get(id);
    if (key !== undefined) {
      this.map.delete(id);
    } else {
      key = make();
      if (this.map.size >= this.capacity) {
        const oldest = this.map.keys().next();
        if (oldest.done !== true) this.map.delete(oldest.value);
      }
    }
    this.map.set(id, key);
    return key;
  }
}
