/**
 * Plain DNS for the tunnel in Node: each query on a fresh UDP socket (a new
 * source port per query, since some networks block a UDP 4-tuple after a
 * few seconds), and again over TCP when the answer comes back truncated.
 * Responses must come from the resolver's address and port and carry the
 * query's id; anything else on the socket is ignored.
 */
import dgram from "node:dgram";
import net from "node:net";
import { type DnsExchange, DnsExchangeError, type DnsExchangeOptions } from "../../../core/src/index.ts";

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

  constructor(options: NodeDnsExchangeOptions) {
    this.host = options.host;
    this.port = options.port;
    this.name = `DNS ${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
    this.maxInFlight = options.maxInFlight ?? 32;
  }

  async exchange(query: Uint8Array, options: DnsExchangeOptions): Promise<Uint8Array> {
    const response = await this.overUdp(query, options);
    // TC: the full answer comes over TCP.
    if (response.length >= 3 && ((response[2] ?? 0) & 0x02) !== 0) return this.overTcp(query, options);
    return response;
  }

  close(): void {
    // Every query has its own socket, closed with it.
  }

  private overUdp(query: Uint8Array, { signal, timeoutMs }: DnsExchangeOptions): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const socket = dgram.createSocket(this.host.includes(":") ? "udp6" : "udp4");
      const finish = (error: Error | undefined, response?: Uint8Array): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        socket.close();
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
      socket.on("error", (error) => {
        finish(new DnsExchangeError("network", `${this.name}: ${error.message}`, { cause: error }));
      });
      socket.on("message", (message, remote) => {
        if (remote.port !== this.port || message.length < 2) return;
        if (message[0] !== query[0] || message[1] !== query[1]) return;
        finish(undefined, new Uint8Array(message));
      });
      socket.send(query, this.port, this.host, (error) => {
        if (error) finish(new DnsExchangeError("network", `${this.name}: ${error.message}`, { cause: error }));
      });
    });
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
