/**
 * The E2eStateStore port: the end-to-end layer's state (sessions, prekeys,
 * known devices, sender keys) as versioned records that layer encrypts before
 * it hands them over.
 *
 * The one transaction notion of the client store lives here: a write set
 * (`E2eWrite[]`) names, per record, the version it read. If any record of the
 * set moved since, nothing of the set is applied and StaleE2eStateError says
 * so. The same write set rides along with the message it belongs to
 * (OutboxStore.addToOutbox / sealOutboxEntry / resealOutboxEntry,
 * TimelineStore.saveReceived) and commits in one transaction with it, so a
 * crash never leaves a message sealed twice or a key used without its
 * message. There is no other way to group writes.
 */
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

/** One record of the end-to-end layer's state, as stored (encrypted by that layer). */
export interface E2eRecord {
  version: number;
  value: Uint8Array;
}

/**
 * Sets a record (value) or deletes it (undefined), only if it is still at
 * `expectedVersion` (0: it must not exist). The stored version becomes
 * expectedVersion + 1.
 */
export interface E2eWrite {
  key: string;
  expectedVersion: number;
  value: Uint8Array | undefined;
}

/** A write set named a version that another writer (process) has moved on from; nothing was applied. */
export class StaleE2eStateError extends RemessengerError {
  override readonly name = "StaleE2eStateError";
  constructor(key: string) {
    // UNAVAILABLE: nothing was applied, and the same work from a fresh read succeeds.
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, `end-to-end state ${key} changed while it was being used`);
  }
}

export interface E2eStateStore {
  /** The records among `keys` that exist. */
  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>>;
  /** Keys of the records whose key starts with `prefix`, sorted. */
  listE2eKeys(prefix: string): Promise<string[]>;
  /** Applies every write or none (StaleE2eStateError). */
  writeE2e(writes: readonly E2eWrite[]): Promise<void>;
}
