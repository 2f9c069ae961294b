/**
 * The round-trip estimate of a DNS tunnel session (RFC 6298 style: smoothed
 * RTT and its variation from answered queries), and the two timings taken
 * from it: how long one query may take, and how long a chunk may lag behind
 * later ones before it counts as lost.
 *
 * Invariants: a query deadline stays within MIN_QUERY_TIMEOUT_MS and
 * MAX_QUERY_TIMEOUT_MS; before any sample it is twice the minimum.
 */
const MIN_QUERY_TIMEOUT_MS = 1_000;
const MAX_QUERY_TIMEOUT_MS = 8_000;

export class RttEstimator {
  private srttMs: number | undefined;
  private rttVarMs = 0;

  /** Deadline of one query, from the measured round trip. */
  get queryTimeoutMs(): number {
    if (this.srttMs === undefined) return 2 * MIN_QUERY_TIMEOUT_MS;
    return Math.round(clamp(this.srttMs + 4 * this.rttVarMs + 200, MIN_QUERY_TIMEOUT_MS, MAX_QUERY_TIMEOUT_MS));
  }

  /** How long a chunk may stay unacked behind later acked ones before it is resent. */
  get reorderMs(): number {
    return Math.max(20, (this.srttMs ?? 200) / 2);
  }

  /** One answered query's round trip. */
  sample(sampleMs: number): void {
    if (this.srttMs === undefined) {
      this.srttMs = sampleMs;
      this.rttVarMs = sampleMs / 2;
      return;
    }
    this.rttVarMs = 0.75 * this.rttVarMs + 0.25 * Math.abs(this.srttMs - sampleMs);
    this.srttMs = 0.875 * this.srttMs + 0.125 * sampleMs;
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
