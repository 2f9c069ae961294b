import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ConnectionEvent,
  ConnectionMonitor,
  type ConnectionStatus,
  initialConnectionStatus,
  isFinal,
  reduceConnection,
} from "./connection-state.ts";

const failure = (reason: string, atMs = 10) => ({ reason, code: undefined, atMs });

function run(events: ConnectionEvent[]): ConnectionStatus {
  return events.reduce(reduceConnection, initialConnectionStatus(0));
}

describe("reduceConnection", () => {
  it("goes connecting → syncing → connected for a subscribing session", () => {
    const status = run([
      { type: "connecting", transport: "websocket", atMs: 1 },
      { type: "loggedIn", transport: "websocket", isSubscribing: true, atMs: 2 },
    ]);
    expect(status.state).toBe("syncing");
    const synced = reduceConnection(status, { type: "synced", atMs: 3 });
    expect(synced).toMatchObject({ state: "connected", transport: "websocket", isSynced: true, sinceMs: 3 });
  });

  it("is connected right after login when the session does not subscribe", () => {
    expect(
      run([
        { type: "connecting", transport: "websocket", atMs: 1 },
        { type: "loggedIn", transport: "websocket", isSubscribing: false, atMs: 2 },
      ]).state,
    ).toBe("connected");
  });

  it("counts consecutive failures, keeps the reason and the retry time while offline", () => {
    const status = run([
      { type: "connecting", transport: "websocket", atMs: 1 },
      { type: "lost", failure: failure("refused"), wasStable: false, nextRetryAtMs: 500 },
      { type: "connecting", transport: "websocket", atMs: 500 },
      { type: "lost", failure: failure("refused again", 600), wasStable: false, nextRetryAtMs: 1600 },
    ]);
    expect(status).toMatchObject({
      state: "offline",
      failedAttempts: 2,
      nextRetryAtMs: 1600,
      lastFailure: { reason: "refused again" },
    });
  });

  it("restarts the failure count after a stable connection dropped", () => {
    const status = run([
      { type: "lost", failure: failure("a"), wasStable: false, nextRetryAtMs: 1 },
      { type: "lost", failure: failure("b"), wasStable: false, nextRetryAtMs: 2 },
      { type: "connecting", transport: "websocket", atMs: 3 },
      { type: "loggedIn", transport: "websocket", isSubscribing: false, atMs: 4 },
      { type: "lost", failure: failure("c"), wasStable: true, nextRetryAtMs: 5 },
    ]);
    expect(status.failedAttempts).toBe(1);
  });

  it("degrades on a stall and recovers to where it was", () => {
    const syncing = run([
      { type: "connecting", transport: "websocket", atMs: 1 },
      { type: "loggedIn", transport: "websocket", isSubscribing: true, atMs: 2 },
      { type: "stalled", atMs: 3 },
    ]);
    expect(syncing.state).toBe("degraded");
    expect(reduceConnection(syncing, { type: "recovered", atMs: 4 }).state).toBe("syncing");
    const synced = reduceConnection(syncing, { type: "synced", atMs: 4 });
    expect(synced.state).toBe("degraded");
    expect(reduceConnection(synced, { type: "recovered", atMs: 5 }).state).toBe("connected");
  });

  it("ignores stalls while not logged in", () => {
    const offline = run([{ type: "lost", failure: failure("x"), wasStable: false, nextRetryAtMs: 9 }]);
    expect(reduceConnection(offline, { type: "stalled", atMs: 10 })).toBe(offline);
  });

  it("never leaves refused or stopped, but still tracks the queue", () => {
    const events = fc.array(
      fc.oneof(
        fc.constant<ConnectionEvent>({ type: "connecting", transport: "websocket", atMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "loggedIn", transport: "websocket", isSubscribing: true, atMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "synced", atMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "stalled", atMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "recovered", atMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "lost", failure: failure("x"), wasStable: false, nextRetryAtMs: 1 }),
        fc.constant<ConnectionEvent>({ type: "refused", failure: failure("no") }),
        fc.constant<ConnectionEvent>({ type: "stopped", atMs: 1 }),
        fc.nat({ max: 5 }).map<ConnectionEvent>((count) => ({ type: "queued", count })),
      ),
    );
    fc.assert(
      fc.property(events, (list) => {
        let status = initialConnectionStatus(0);
        let final: string | undefined;
        for (const event of list) {
          status = reduceConnection(status, event);
          if (final !== undefined) expect(status.state).toBe(final);
          if (isFinal(status.state)) final = status.state;
          if (event.type === "queued") expect(status.queuedCount).toBe(event.count);
          if (status.state === "offline") expect(status.nextRetryAtMs).toBeDefined();
        }
      }),
    );
  });

  it("leaves stopped only when the application starts the session again, and then is idle with no failures", () => {
    const lost: ConnectionEvent = { type: "lost", failure: failure("x"), wasStable: false, nextRetryAtMs: 5 };
    const stopped = run([lost, lost, { type: "stopped", atMs: 6 }]);
    const restarted = reduceConnection(stopped, { type: "restarted", atMs: 7 });
    expect(restarted).toMatchObject({ state: "idle", sinceMs: 7, failedAttempts: 0, nextRetryAtMs: undefined });
    expect(restarted.lastFailure).toEqual(failure("x"));
    const refused = run([{ type: "refused", failure: failure("no") }]);
    expect(reduceConnection(refused, { type: "restarted", atMs: 7 })).toBe(refused);
    const idle = initialConnectionStatus(0);
    expect(reduceConnection(idle, { type: "restarted", atMs: 7 })).toBe(idle);
  });
});

describe("ConnectionMonitor", () => {
  it("emits each change once and stays quiet when nothing changed", () => {
    const monitor = new ConnectionMonitor(0, () => undefined);
    const seen: string[] = [];
    monitor.events.on("change", (s) => seen.push(`${s.state}/${s.queuedCount}`));
    monitor.dispatch({ type: "queued", count: 2 });
    monitor.dispatch({ type: "queued", count: 2 });
    monitor.dispatch({ type: "connecting", transport: "websocket", atMs: 1 });
    expect(seen).toEqual(["idle/2", "connecting/2"]);
  });
});
