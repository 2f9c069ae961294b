/**
 * Worker-thread entry of the embedded store's writer. node:sqlite is
 * synchronous, so a COMMIT (fsync included) here keeps the server's event loop
 * free; the main thread meanwhile gathers the next group commit.
 *
 * Messages from the main thread are handled strictly one at a time, in order.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openWriterDatabase } from "./sqlite-schema.ts";
import { SqliteWriter, toWireError, type WireError, type WireSettlement, type WriteOp } from "./sqlite-writer.ts";

export interface WriterWorkerData {
  databasePath: string;
}

export type ToWriter = { type: "batch"; batchId: number; ops: WriteOp[] } | { type: "close" };

export type FromWriter =
  | { type: "ready" }
  | { type: "openFailed"; error: WireError }
  | { type: "batchDone"; batchId: number; settlements: WireSettlement[] }
  | { type: "batchFailed"; batchId: number; error: WireError }
  | { type: "closed" };

const port = parentPort;
if (port === null) throw new Error("sqlite-writer-worker.ts runs only as a worker thread");
const { databasePath } = workerData as WriterWorkerData;

function post(message: FromWriter): void {
  port?.postMessage(message);
}

try {
  const db = openWriterDatabase(databasePath);
  const writer = new SqliteWriter(db);
  port.on("message", (message: ToWriter) => {
    switch (message.type) {
      case "batch":
        try {
          post({ type: "batchDone", batchId: message.batchId, settlements: writer.applyBatch(message.ops) });
        } catch (error) {
          post({ type: "batchFailed", batchId: message.batchId, error: toWireError(error) });
        }
        return;
      case "close":
        db.close();
        post({ type: "closed" });
        port.close();
        return;
    }
  });
  post({ type: "ready" });
} catch (error) {
  post({ type: "openFailed", error: toWireError(error) });
  port.close();
}
