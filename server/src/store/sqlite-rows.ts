/**
 * Typed access to node:sqlite result rows. A column of the wrong type means the
 * file is not ours or is corrupt, so it throws instead of passing `unknown` on.
 */
import type { SQLOutputValue } from "node:sqlite";

export type Row = Record<string, SQLOutputValue>;

export function integerColumn(row: Row, column: string): number {
  const value = row[column];
  if (typeof value !== "number" || !Number.isSafeInteger(value))
    throw new Error(`column ${column}: expected an integer`);
  return value;
}

export function textColumn(row: Row, column: string): string {
  const value = row[column];
  if (typeof value !== "string") throw new Error(`column ${column}: expected text`);
  return value;
}

export function blobColumn(row: Row, column: string): Uint8Array {
  const value = row[column];
  if (!(value instanceof Uint8Array)) throw new Error(`column ${column}: expected a blob`);
  return value;
}
