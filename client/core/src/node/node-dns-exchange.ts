/**
 * Plain DNS for the tunnel in Node over UDP, and again over TCP when the
 * answer comes back truncated. Some networks block a UDP 4-tuple after a few
 * seconds, so the source port changes often: a socket takes queries for at
 * most SOCKET_LIFETIME_MS or SOCKET_QUERIES queries, then a fresh one (new
 * port) takes over while the old one finishes what it has in flight. (A
 * socket per query costs a bind and a close each, measured as the largest
 * client cost at thousands of queries a second.) Responses must come from
 * the resolver's address and port and carry a pending query's id; anything
 * else on the socket is ignored.
 */
import dgram from "node:dgram";
import net from "node:net";
import { type DnsExchange, DnsExchangeError, type DnsExchangeOptions } from "../index.ts";

/** A UDP socket stops taking new queries after this long or this many queries. */
const SOCKET_LIFETIME_MS = 1_000;
const SOCKET_QUERIES = 512;
/**
 * Receive buffer of a socket: a burst of answers (1232 bytes each, up to
 * 128 in flight) must wait there while the process is busy; the default
 * (208 KiB, ~100 answers) overflowed on a loaded machine, and every drop is
 * a query timeout. The kernel caps it at net.core.rmem_max.
 */
const SOCKET_RECEIVE_BUFFER_BYTES = 1024 * 1024;

interface UdpPort {
  socket: dgram.Socket;
  createdAt: number;
  uses: number;
  pending: Map<number, (error: Error | undefined, response?: Uint8Array) => void>;
  isRetired: boolean;
  isClosed?: boolean;
  /** Sends held until the socket is connected; undefined once it is. */
  waiting: (() => void)[] | undefined;
}

export interface NodeDnsExchangeOptions {
  host: string;
  port: number;
  maxInFlight?: number;
}

export class NodeDnsExchange implements DnsExchange {
  readonly name: string;
  readonly maxInFlight: number;
  private readonly host: string;
  private readonly port: number;
  private current: UdpPort | undefined;

  constructor(options: NodeDnsExchangeOptions) {
    this.host = options.host;
    this.port = options.port;
    this.name = `DNS ${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
    this.maxInFlight = options.maxInFlight ?? 128;
  }

  async exchange(query: Uint8Array, options: DnsExchangeOptions): Promise<Uint8Array> {
    const response = await this.overUdp(query, options);
    // TC: the full answer comes over TCP.
    if (response.length >= 3 && ((response[2] ?? 0) & 0x02) !== 0) return this.overTcp(query, options);
    return response;
  }

  close(): void {
    const current = this.current;
    if (current === undefined) return;
    current.isRetired = true;
    this.release(current);
  }

  private overUdp(query: Uint8Array, { signal, timeoutMs }: DnsExchangeOptions): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const id = ((query[0] ?? 0) << 8) | (query[1] ?? 0);
      const port = this.socketFor(id);
      const finish = (error: Error | undefined, response?: Uint8Array): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        port.pending.delete(id);
        this.release(port);
        if (response !== undefined) resolve(response);
        else reject(error ?? new Error("no answer"));
      };
      const onAbort = (): void => {
        finish(abortError(signal));
      };
      const timer = setTimeout(() => {
        finish(new DnsExchangeError("timeout", `${this.name}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      port.pending.set(id, finish);
      const send = (): void => {
        port.socket.send(query, (error) => {
          if (error) finish(new DnsExchangeError("network", `${this.name}: ${error.message}`, { cause: error }));
        });
      };
      if (port.waiting === undefined) send();
      else port.waiting.push(send);
    });
  }

  /** The socket for a query with this id: the current one unless it is old, busy with the id, or used up. */
  private socketFor(id: number): UdpPort {
    const now = Date.now();
    const current = this.current;
    if (
      current !== undefined &&
      now - current.createdAt < SOCKET_LIFETIME_MS &&
      current.uses < SOCKET_QUERIES &&
      !current.pending.has(id)
    ) {
      current.uses += 1;
      return current;
    }
    if (current !== undefined) {
      current.isRetired = true;
      this.release(current);
    }
    const socket = dgram.createSocket({
      type: this.host.includes(":") ? "udp6" : "udp4",
      recvBufferSize: SOCKET_RECEIVE_BUFFER_BYTES,
    });
    const port: UdpPort = { socket, createdAt: now, uses: 1, pending: new Map(), isRetired: false, waiting: [] };
    socket.on("error", (error) => {
      for (const finish of [...port.pending.values()]) {
        finish(new DnsExchangeError("network", `${this.name}: ${error.message}`, { cause: error }));
      }
      port.isRetired = true;
      this.release(port);
    });
    socket.on("message", (message, remote) => {
      if (remote.port !== this.port || message.length < 12) return;
      const finish = port.pending.get(message.readUInt16BE(0));
      finish?.(undefined, new Uint8Array(message));
    });
    socket.unref();
    // Connected: no address lookup per send, and the kernel drops datagrams from anyone but the resolver.
    socket.connect(this.port, this.host, () => {
      const waiting = port.waiting ?? [];
      port.waiting = undefined;
      for (const send of waiting) send();
    });
    this.current = port;
    return port;
  }

  /** Closes a retired socket once nothing is pending on it. */
  private release(port: UdpPort): void {
    if (!port.isRetired || port.pending.size > 0 || port.isClosed === true) return;
    port.isClosed = true;
    if (this.current === port) this.current = undefined;
    port.socket.close();
  }

  private overTcp(query: Uint8Array, { signal, timeoutMs }: DnsExchangeOptions): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port });
      let buffered = Buffer.alloc(0);
      const finish = (error: Error | undefined, response?: Uint8Array): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        socket.destroy();
        if (response !== undefined) resolve(response);
        else reject(error ?? new Error("no answer"));
      };
      const onAbort = (): void => {
        finish(abortError(signal));
      };
      const timer = setTimeout(() => {
        finish(new DnsExchangeError("timeout", `${this.name} (TCP): no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      socket.on("error", (error) => {
        finish(new DnsExchangeError("network", `${this.name} (TCP): ${error.message}`, { cause: error }));
      });
      socket.on("connect", () => {
        const header = Buffer.alloc(2);
        header.writeUInt16BE(query.length);
        socket.write(Buffer.concat([header, query]));
      });
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < 2) return;
        const length = buffered.readUInt16BE(0);
        if (buffered.length >= 2 + length) finish(undefined, new Uint8Array(buffered.subarray(2, 2 + length)));
      });
      socket.on("end", () => {
        finish(new DnsExchangeError("network", `${this.name} (TCP): closed before the answer`));
      });
    });
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}
