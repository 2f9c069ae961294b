/**
 * The contract between bench/run.ts and each benchmark: a benchmark is one
 * file in bench/ exporting a `Benchmark`, whose run() returns a `BenchReport`
 * (a table plus notes) that run.ts prints or emits as JSON. Benchmarks print
 * progress through `log` and assert nothing about time.
 */

export interface BenchOptions {
  /** A short run: smaller counts and shorter windows, for a smoke check. */
  isQuick: boolean;
  /** Aborted on Ctrl-C: stop measuring and clean up. */
  signal: AbortSignal;
  /** Progress lines (stderr), so stdout keeps only the results. */
  log: (line: string) => void;
}

/** A table cell: null renders as "-". */
export type Cell = string | number | null;

export interface Column {
  key: string;
  label: string;
  /** Decimals for numbers (default 0). */
  digits?: number;
}

export interface BenchReport {
  name: string;
  title: string;
  columns: Column[];
  rows: Array<Record<string, Cell>>;
  /** What a reader must know to read the figures right. */
  notes: string[];
}

export interface Benchmark {
  /** What --only selects. */
  name: string;
  summary: string;
  run(options: BenchOptions): Promise<BenchReport>;
}
