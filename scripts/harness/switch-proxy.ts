/**
 * Test harness: a TCP proxy in front of a server whose behaviour a test
 * switches at any moment, to play the network faults a censor or a broken
 * link causes, on loopback and without privileges:
 * - "pass":      forward both ways;
 * - "refuse":    reset new connections at once and reset the open ones (a port block);
 * - "blackhole": accept, forward nothing either way, never answer (a silent drop);
 * - "reset-after": forward the first `resetAfterBytes` bytes from the server,
 *                then reset (DPI that lets a WebSocket upgrade through, then kills it).
 * The network-namespace harness does the same with nftables; this one runs anywhere.
 */
import { type Server, type Socket, connect, createServer } from "node:net";

export type ProxyMode = "pass" | "refuse" | "blackhole" | "reset-after";

export interface SwitchProxy {
  /** http://127.0.0.1:PORT — the base URL clients use instead of the server's. */
  readonly url: string;
  readonly port: number;
  mode: ProxyMode;
  /** With "reset-after": bytes from the server let through before the reset. */
  resetAfterBytes: number;
  /** Connections accepted so far (probes and attempts show up here). */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startSwitchProxy(targetUrl: string, mode: ProxyMode = "pass"): Promise<SwitchProxy> {
  const target = new URL(targetUrl);
  const pairs = new Set<{ client: Socket; upstream: Socket | undefined; fromServer: number }>();
  let accepted = 0;

  const resetAll = (): void => {
    for (const pair of pairs) {
      pair.client.resetAndDestroy();
      pair.upstream?.destroy();
    }
    pairs.clear();
  };

  const proxy: SwitchProxy = {
    url: "",
    port: 0,
    resetAfterBytes: 300,
    get accepted() {
      return accepted;
    },
    get mode() {
      return currentMode;
    },
    set mode(next: ProxyMode) {
      currentMode = next;
      if (next === "refuse") resetAll();
    },
    close: async () => {
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  let currentMode = mode;

  const server: Server = createServer((client) => {
    accepted += 1;
    client.on("error", () => undefined);
    if (currentMode === "refuse") {
      client.resetAndDestroy();
      return;
    }
    const pair: { client: Socket; upstream: Socket | undefined; fromServer: number } = {
      client,
      upstream: undefined,
      fromServer: 0,
    };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on("close", drop);
    if (currentMode === "blackhole") {
      client.resume(); // read and discard; answer nothing
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    pair.upstream = upstream;
    upstream.on("error", drop);
    upstream.on("close", drop);
    upstream.on("data", (chunk: Buffer) => {
      if (currentMode === "blackhole") return;
      if (currentMode === "refuse") {
        drop();
        return;
      }
      if (currentMode === "reset-after" && pair.fromServer + chunk.length > proxy.resetAfterBytes) {
        client.write(chunk.subarray(0, Math.max(0, proxy.resetAfterBytes - pair.fromServer)));
        pairs.delete(pair);
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      pair.fromServer += chunk.length;
      client.write(chunk);
    });
    client.on("data", (chunk: Buffer) => {
      if (currentMode === "blackhole") return;
      upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  Object.assign(proxy, { url: `http://127.0.0.1:${port}`, port });
  return proxy;
}
