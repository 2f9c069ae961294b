import { describe, expect, it } from "vitest";
import { failoverTransportFactory, splitServerUrls } from "./failover-transport.ts";
import type { Transport, TransportCloseReason, TransportFactory, TransportHandlers } from "./transport.ts";

/** Records each attempt, and how to make the server drop that connection. */
interface Script {
  attempts: string[];
  drops: Array<() => void>;
}

/** A pipe that opens or fails as told. */
function scriptedFactory(name: string, script: Script, isUp: () => boolean): TransportFactory {
  return {
    kind: "websocket",
    create(handlers: TransportHandlers): Transport {
      let closeReason: TransportCloseReason | undefined;
      const close = (reason: TransportCloseReason): void => {
        closeReason = reason;
        handlers.onClose(reason);
      };
      script.drops.push(() => {
        close({ code: 1006, reason: "dropped", isLocal: false });
      });
      return {
        kind: "websocket",
        connect: () => {
          script.attempts.push(name);
          return isUp() ? Promise.resolve() : Promise.reject(new Error(`${name} refused`));
        },
        send: () => undefined,
        bufferedAmount: 0,
        close: (code, reason) => {
          close({ code, reason, isLocal: true });
        },
        get closeReason() {
          return closeReason;
        },
      };
    },
  };
}

const options = { signal: new AbortController().signal, timeoutMs: 1_000 };
const handlers: TransportHandlers = { onFrame: () => undefined, onClose: () => undefined };

function drop(script: Script, index: number): void {
  const dropIt = script.drops[index];
  if (dropIt === undefined) throw new Error(`no connection ${index}`);
  dropIt();
}

describe("failoverTransportFactory", () => {
  it("stays on a working server and moves to the next after a failed connect", async () => {
    const script: Script = { attempts: [], drops: [] };
    const factory = failoverTransportFactory([
      scriptedFactory("a", script, () => false),
      scriptedFactory("b", script, () => true),
      scriptedFactory("c", script, () => true),
    ]);
    await expect(factory.create(handlers).connect(options)).rejects.toThrow(/a refused/);
    await factory.create(handlers).connect(options);
    await factory.create(handlers).connect(options);
    expect(script.attempts).toEqual(["a", "b", "b"]);
    expect(factory.currentIndex).toBe(1);
  });

  it("moves on when the server drops the connection, not when the client closes it, and wraps around", async () => {
    const script: Script = { attempts: [], drops: [] };
    const factory = failoverTransportFactory([
      scriptedFactory("a", script, () => true),
      scriptedFactory("b", script, () => true),
    ]);
    const first = factory.create(handlers);
    await first.connect(options);
    first.close(1000, "bye");
    expect(factory.currentIndex).toBe(0);
    await factory.create(handlers).connect(options);
    drop(script, 1);
    expect(factory.currentIndex).toBe(1);
    await factory.create(handlers).connect(options);
    drop(script, 2);
    expect(factory.currentIndex).toBe(0);
    expect(script.attempts).toEqual(["a", "a", "b"]);
  });

  it("ignores a late failure of an older connection", async () => {
    const script: Script = { attempts: [], drops: [] };
    const factory = failoverTransportFactory([
      scriptedFactory("a", script, () => true),
      scriptedFactory("b", script, () => true),
      scriptedFactory("c", script, () => true),
    ]);
    await factory.create(handlers).connect(options);
    drop(script, 0); // a → b
    await factory.create(handlers).connect(options);
    drop(script, 0); // the old one again: must not skip b
    expect(factory.currentIndex).toBe(1);
  });

  it("refuses an empty server list, and splits a comma-separated one", () => {
    expect(() => failoverTransportFactory([])).toThrow(/at least one/);
    expect(splitServerUrls(" http://a:1, http://b:2 ,,")).toEqual(["http://a:1", "http://b:2"]);
  });
});
