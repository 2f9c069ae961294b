/**
 * Several servers of one deployment (the nodes behind `--server a,b,c`): a
 * TransportFactory that uses one until it fails, then the next.
 *
 * - Each connection attempt goes to the current server; a failed connect or
 *   a close the client did not ask for moves "current" to the next one, so
 *   the session's next attempt (after its usual backoff) tries another node.
 * - Sticky while it works: a healthy connection never moves.
 * - Any node serves any chat (the server forwards to the chat's owner), so
 *   switching nodes needs nothing from the layers above: the session logs in
 *   again and resumes from its cursors, as after any reconnect.
 */
import type { Transport, TransportFactory, TransportHandlers } from "./transport.ts";

export interface FailoverTransportFactory extends TransportFactory {
  /** Index of the server the next attempt goes to (for status and tests). */
  readonly currentIndex: number;
}

export function failoverTransportFactory(factories: readonly TransportFactory[]): FailoverTransportFactory {
  const [first] = factories;
  if (first === undefined) throw new Error("failover needs at least one server");
  let current = 0;
  // Only the attempt that used `current` may move it: a late failure of an
  // older connection must not skip a server that is working.
  const advanceFrom = (index: number): void => {
    if (current === index) current = (index + 1) % factories.length;
  };
  return {
    kind: first.kind,
    get currentIndex() {
      return current;
    },
    create(handlers: TransportHandlers): Transport {
      const index = current;
      const factory = factories[index] ?? first;
      const inner = factory.create({
        onFrame: (frame) => {
          handlers.onFrame(frame);
        },
        onClose: (reason) => {
          if (!reason.isLocal) advanceFrom(index);
          handlers.onClose(reason);
        },
      });
      return {
        kind: inner.kind,
        connect: async (options) => {
          try {
            await inner.connect(options);
          } catch (error) {
            if (!options.signal.aborted) advanceFrom(index);
            throw error;
          }
        },
        send: (frame) => {
          inner.send(frame);
        },
        get bufferedAmount() {
          return inner.bufferedAmount;
        },
        close: (code, reason) => {
          inner.close(code, reason);
        },
        get closeReason() {
          return inner.closeReason;
        },
      };
    },
  };
}

/** "a,b , c" → ["a", "b", "c"]: the server list of `--server`. */
export function splitServerUrls(serverUrls: string): string[] {
  return serverUrls
    .split(",")
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
}
