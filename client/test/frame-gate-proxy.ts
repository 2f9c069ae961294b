/**
 * A TCP proxy in front of the server's WebSocket that can cut the way back:
 * it forwards everything, decodes the client's frames on the way up, and once
 * `holdsAfter(frame)` says so, stops forwarding the server's bytes to the
 * client. The server then has the request but the client never hears the
 * answer — the exact window between "the server stored it" and "the client
 * knows", which a crash test needs to hit deterministically.
 *
 * It strips Sec-WebSocket-Extensions from the upgrade so frames stay
 * uncompressed and readable here.
 */
import { type Server, type Socket, createServer, connect } from "node:net";
import { type ClientRequestFrame, decodeClientFrame } from "@remessenger/protocol";

export interface FrameGate {
  /** Base URL clients use instead of the server's. */
  readonly url: string;
  /** Whether the way back is cut (on some connection). */
  readonly isHolding: boolean;
  close(): Promise<void>;
}

export async function startFrameGate(
  serverUrl: string,
  holdsAfter: (frame: ClientRequestFrame) => boolean,
): Promise<FrameGate> {
  const target = new URL(serverUrl);
  let isHolding = false;
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let isUpgraded = false;
    let pending = Buffer.alloc(0);
    let holdsThis = false;

    upstream.on("data", (chunk: Buffer) => {
      if (!holdsThis) client.write(chunk);
    });
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (!isUpgraded) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = pending
          .subarray(0, end)
          .toString("latin1")
          .split("\r\n")
          .filter((line) => !/^sec-websocket-extensions:/i.test(line))
          .join("\r\n");
        upstream.write(`${head}\r\n\r\n`);
        pending = pending.subarray(end + 4);
        isUpgraded = true;
      }
      for (;;) {
        const frame = nextWebSocketFrame(pending);
        if (frame === undefined) return;
        upstream.write(pending.subarray(0, frame.length));
        pending = pending.subarray(frame.length);
        if (frame.opcode === 2 && holdsAfter(decodeClientFrame(frame.payload))) {
          holdsThis = true;
          isHolding = true;
        }
      }
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the gate has no TCP address");
  return {
    url: `http://127.0.0.1:${address.port}`,
    get isHolding() {
      return isHolding;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** One complete client→server WebSocket frame at the start of `buffer` (payload unmasked), if there is one. */
function nextWebSocketFrame(buffer: Buffer): { opcode: number; payload: Uint8Array; length: number } | undefined {
  if (buffer.length < 2) return undefined;
  const first = buffer[0] ?? 0;
  const second = buffer[1] ?? 0;
  let length = second & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buffer.length < 4) return undefined;
    length = buffer.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buffer.length < 10) return undefined;
    length = Number(buffer.readBigUInt64BE(2));
    offset = 10;
  }
  const isMasked = (second & 0x80) !== 0;
  const mask = isMasked ? buffer.subarray(offset, offset + 4) : undefined;
  if (isMasked) offset += 4;
  if (buffer.length < offset + length) return undefined;
  const payload = new Uint8Array(buffer.subarray(offset, offset + length));
  if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return { opcode: first & 0x0f, payload, length: offset + length };
}
