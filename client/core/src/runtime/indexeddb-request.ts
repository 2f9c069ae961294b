/**
 * IndexedDB's event-based requests as promises, for the browser adapters
 * (the key vault, the IndexedDB client store).
 *
 * - A request's success does not mean its data is stored: a write is durable
 *   only when its transaction fires `complete` (`committed`).
 * - Awaiting these promises inside a transaction keeps it active (their
 *   reactions run as microtasks of the request's event); awaiting anything
 *   else there lets the transaction commit early.
 */

export function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => {
      resolve(req.result);
    };
    req.onerror = () => {
      reject(req.error ?? new Error("IndexedDB request failed"));
    };
  });
}

/** Settles when `tx` has committed (or failed): a request's success alone does not mean the data is stored. */
export function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => {
      resolve();
    };
    tx.onerror = () => {
      reject(tx.error ?? new Error("IndexedDB transaction failed"));
    };
    tx.onabort = () => {
      reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    };
  });
}

/**
 * Walks a cursor. `visit` returns true for the next record, false to stop,
 * or a key to jump to (past the current one). Resolves when it stops or the
 * range ends.
 */
export function walk<C extends IDBCursor>(
  req: IDBRequest<C | null>,
  visit: (cursor: C) => boolean | IDBValidKey,
): Promise<void> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => {
      const cursor = req.result;
      if (cursor === null) {
        resolve();
        return;
      }
      try {
        const next = visit(cursor);
        if (next === false) resolve();
        else if (next === true) cursor.continue();
        else cursor.continue(next);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    };
    req.onerror = () => {
      reject(req.error ?? new Error("IndexedDB cursor failed"));
    };
  });
}
