/**
 * The DNS listener: the tunnel gateway on UDP and TCP at one address
 * (--dns-listen, port 53 in production). UDP answers fit the requester's
 * EDNS0 size (the gateway sets TC otherwise); TCP carries 2-byte-length
 * framed messages, several per connection, answered in any order.
 *
 * Bounds: a TCP connection idle for TCP_IDLE_MS is closed; at most
 * MAX_TCP_CONNECTIONS at once and MAX_TCP_PENDING unanswered queries each.
 */
import dgram from "node:dgram";
import net from "node:net";
import type { Logger } from "pino";
import type { TunnelGateway } from "./tunnel-gateway.ts";

const TCP_IDLE_MS = 30_000;
const MAX_TCP_CONNECTIONS = 1_000;
const MAX_TCP_PENDING = 256;
/** Socket buffers of the UDP listener, as DNS servers under load use (Unbound suggests 4 MiB); capped by net.core.rmem_max/wmem_max. */
const UDP_BUFFER_BYTES = 4 * 1024 * 1024;
const MAX_MESSAGE_BYTES = 65_535;

export interface DnsEdgeOptions {
  host: string;
  port: number;
  gateway: TunnelGateway;
  log: Logger;
}

export class DnsEdge {
  private readonly options: DnsEdgeOptions;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();
  private isClosed = false;

  constructor(options: DnsEdgeOptions) {
    this.options = options;
  }

  /** Binds UDP and TCP on the same port (port 0: a free one, the same for both). */
  async listen(): Promise<{ host: string; port: number }> {
    const { host } = this.options;
    for (let attempt = 0; ; attempt += 1) {
      const udp = dgram.createSocket({
        type: host.includes(":") ? "udp6" : "udp4",
        recvBufferSize: UDP_BUFFER_BYTES,
        sendBufferSize: UDP_BUFFER_BYTES,
      });
      await new Promise<void>((resolve, reject) => {
        udp.once("error", reject);
        udp.bind(this.options.port, host, () => {
          udp.off("error", reject);
          resolve();
        });
      });
      const port = udp.address().port;
      const tcp = net.createServer((socket) => {
        this.accept(socket);
      });
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once("error", reject);
          tcp.listen(port, host, () => {
            tcp.off("error", reject);
            resolve();
          });
        });
      } catch (error) {
        udp.close();
        // Port 0 picked a UDP port whose TCP twin is taken: try another.
        if (this.options.port === 0 && attempt < 10) continue;
        throw error;
      }
      udp.on("message", (message, remote) => {
        this.onUdp(udp, message, remote);
      });
      udp.on("error", (error) => {
        this.options.log.warn({ err: error }, "DNS UDP socket error");
      });
      this.udp = udp;
      this.tcp = tcp;
      return { host, port };
    }
  }

  async close(): Promise<void> {
    this.isClosed = true;
    this.udp?.close();
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((resolve) => {
      if (this.tcp === undefined) resolve();
      else
        this.tcp.close(() => {
          resolve();
        });
    });
  }

  private onUdp(udp: dgram.Socket, message: Buffer, remote: dgram.RemoteInfo): void {
    const bytes = new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
    this.options.gateway.handle({ bytes, source: remote.address, carrier: "udp" }).then(
      (response) => {
        // A query answered after close() (a held poll) has no socket left to go out on.
        if (response.kind !== "answer" || this.isClosed) return;
        udp.send(response.bytes, remote.port, remote.address, (error) => {
          if (error) this.options.log.debug({ err: error }, "DNS UDP send failed");
        });
      },
      (error: unknown) => {
        this.options.log.error({ err: error }, "DNS UDP query failed");
      },
    );
  }

  private accept(socket: net.Socket): void {
    if (this.connections.size >= MAX_TCP_CONNECTIONS) {
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on("close", () => this.connections.delete(socket));
    socket.on("error", () => {
      // A reset peer: the close handler cleans up.
    });
    let buffered: Buffer = Buffer.alloc(0);
    let pending = 0;
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        if (length === 0 || length > MAX_MESSAGE_BYTES || pending >= MAX_TCP_PENDING) {
          socket.destroy();
          return;
        }
        pending += 1;
        const bytes = new Uint8Array(message.buffer, message.byteOffset, message.byteLength).slice();
        this.options.gateway.handle({ bytes, source: socket.remoteAddress ?? "?", carrier: "tcp" }).then(
          (response) => {
            pending -= 1;
            if (response.kind !== "answer" || socket.destroyed) return;
            const header = Buffer.alloc(2);
            header.writeUInt16BE(response.bytes.length);
            socket.write(Buffer.concat([header, response.bytes]));
          },
          (error: unknown) => {
            pending -= 1;
            this.options.log.error({ err: error }, "DNS TCP query failed");
            socket.destroy();
          },
        );
      }
    });
  }
}
