/**
 * A userspace delay relay for UDP and TCP (this kernel has no netem): it
 * listens on one address and forwards to a target, holding every datagram
 * and every TCP chunk for `oneWayMs` in each direction, so a path through
 * it gains 2 × oneWayMs of round trip. Each UDP source gets its own upstream
 * socket, so answers find their way back. Bounded: at most MAX_FLOWS UDP
 * sources at once; idle ones are closed, and when the table is full the
 * least recently used flow makes room (a resolver picks a new source port
 * for every query, so thousands of flows a second are normal).
 */
import dgram from "node:dgram";
import net from "node:net";

const MAX_FLOWS = 4_096;
const FLOW_IDLE_MS = 5_000;

export interface DelayRelay {
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startDelayRelay(options: {
  listenHost: string;
  target: { host: string; port: number };
  oneWayMs: number;
}): Promise<DelayRelay> {
  const { listenHost, target, oneWayMs } = options;
  let isStopped = false;
  const later = (run: () => void): void => {
    const guarded = (): void => {
      if (!isStopped) run();
    };
    if (oneWayMs <= 0) guarded();
    else setTimeout(guarded, oneWayMs);
  };
  const udp = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(0, listenHost, () => {
      udp.off("error", reject);
      resolve();
    });
  });
  const port = udp.address().port;
  const flows = new Map<string, { socket: dgram.Socket; lastMs: number }>();
  udp.on("message", (message, remote) => {
    const key = `${remote.address}:${remote.port}`;
    let flow = flows.get(key);
    if (flow === undefined) {
      if (flows.size >= MAX_FLOWS) {
        const [oldestKey, oldest] = flows.entries().next().value ?? [];
        if (oldestKey !== undefined) flows.delete(oldestKey);
        oldest?.socket.close();
      }
      const socket = dgram.createSocket("udp4");
      socket.on("message", (answer) => {
        later(() => {
          udp.send(answer, remote.port, remote.address);
        });
      });
      socket.on("error", () => {
        socket.close();
        if (flows.get(key)?.socket === socket) flows.delete(key);
      });
      flow = { socket, lastMs: Date.now() };
      flows.set(key, flow);
    }
    flow.lastMs = Date.now();
    // Most recently used last: the Map's order is the eviction order.
    flows.delete(key);
    flows.set(key, flow);
    const { socket } = flow;
    later(() => {
      // Evicted meanwhile (a full table): the datagram is lost, as on a congested path.
      if (flows.get(key)?.socket === socket) socket.send(message, target.port, target.host);
    });
  });
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [key, flow] of flows) {
      if (now - flow.lastMs <= FLOW_IDLE_MS) break;
      flow.socket.close();
      flows.delete(key);
    }
  }, 1_000);
  sweeper.unref();
  const tcp = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    const pipe = (from: net.Socket, to: net.Socket): void => {
      from.on("data", (chunk) => {
        later(() => {
          if (!to.destroyed) to.write(chunk);
        });
      });
      from.on("close", () => {
        later(() => to.destroy());
      });
      from.on("error", () => undefined);
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, listenHost, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  return {
    host: listenHost,
    port,
    stop: async () => {
      isStopped = true;
      clearInterval(sweeper);
      for (const flow of flows.values()) flow.socket.close();
      flows.clear();
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}
