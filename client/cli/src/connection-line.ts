/**
 * The connection state as the CLI shows it: one line for people (state, pipe,
 * reason, retry, queue, and every rung's health) and one JSON object, shared by
 * `listen` and `status --watch` so both say the same thing the same way. Pure.
 */
import type { ConnectionStatus, TransportHealth } from "@remessenger/client-core";

const SHORT_NAMES: Record<string, string> = { websocket: "ws", https: "https", doh: "doh", dns: "dns" };

export function connectionJson(status: ConnectionStatus): Record<string, unknown> {
  const reason = status.state === "offline" || status.state === "refused" ? status.lastFailure?.reason : undefined;
  return {
    type: "connection",
    state: status.state,
    transport: status.transport,
    reason,
    lastFailure: status.lastFailure?.reason,
    nextRetryAtMs: status.nextRetryAtMs,
    queued: status.queuedCount,
    transports: transportsJson(status),
  };
}

/** Each rung's health, best first, as JSON lines and `status` show it. */
export function transportsJson(status: ConnectionStatus): Array<Record<string, unknown>> {
  return status.transports.map((rung) => ({
    kind: rung.kind,
    failures: rung.failures,
    lastFailure: rung.lastFailure?.reason,
    retryAtMs: rung.retryAtMs,
    lastSuccessAtMs: rung.lastSuccessAtMs,
  }));
}

export function connectionLine(status: ConnectionStatus, nowMs: number): string {
  const reason = status.state === "offline" || status.state === "refused" ? status.lastFailure?.reason : undefined;
  const retry =
    status.nextRetryAtMs === undefined
      ? ""
      : `; retrying in ${Math.max(0, (status.nextRetryAtMs - nowMs) / 1000).toFixed(1)} s`;
  const queued = status.queuedCount > 0 ? ` (${status.queuedCount} queued)` : "";
  const rungs =
    status.transports.length > 1 ? ` [${status.transports.map((r) => rungText(r, status, nowMs)).join(", ")}]` : "";
  return `[${status.state}]${status.transport === undefined ? "" : ` ${status.transport}`}${reason === undefined ? "" : `: ${reason}`}${retry}${queued}${rungs}`;
}

function rungText(rung: TransportHealth, status: ConnectionStatus, nowMs: number): string {
  const name = SHORT_NAMES[rung.kind] ?? rung.kind;
  if (rung.kind === status.transport && (status.state === "connected" || status.state === "syncing")) {
    return `${name} in use`;
  }
  if (rung.failures === 0) return rung.lastSuccessAtMs === undefined ? `${name} untried` : `${name} ok`;
  const wait = rung.retryAtMs > nowMs ? `, next try in ${((rung.retryAtMs - nowMs) / 1000).toFixed(1)} s` : "";
  return `${name} failing ×${rung.failures} (${rung.lastFailure?.reason ?? "unknown"}${wait})`;
}
