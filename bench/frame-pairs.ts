/**
 * Our server's side of the spine benchmark: clients of the real server over
 * WebSocket, paired in direct chats, carrying the pair load (pair-load.ts).
 *
 * Setup (register, create the direct chat, subscribe, wait for sync) goes
 * through the harness's FrameDriver. Then each client takes its socket over
 * with a lean loop: the driver keeps every push and arms a timer per request,
 * which at tens of thousands of messages a second would cost the load
 * generator more than the server, on the same two cores.
 *
 * The loop: sends are requests (the answer, with the seq, comes once the
 * message is durable); received messages are acked cumulatively with request
 * id 0, once per burst of frames (per event-loop turn), as a client that
 * stores and acks as it goes. The server pushes each message to every device
 * of the chat, the sender's own included (its queue is gapless), so a client
 * gets its partner's messages and the echo of its own; only the former count.
 */
import { randomBytes } from "node:crypto";
import type WebSocket from "ws";
import { decodeServerFrame, encodeClientFrame, newMessageId } from "@remessenger/protocol";
import { FrameDriver } from "../scripts/harness/frame-driver.ts";
import type { LoadRun, WindowedSender } from "./pair-load.ts";

export const PAYLOAD_BYTES = 200;
/** Send request ids start above the few that setup used; id = base + counter. */
const SEND_REQUEST_ID_BASE = 1_000;
/** Clients set up at once: enough to be quick, few enough not to time out logins. */
const SETUP_CONCURRENCY = 25;
const SETUP_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 5_000;

export interface FramePairs {
  readonly clientCount: number;
  /** Pushes and error frames the load did not expect (should stay 0). */
  readonly unexpected: number;
  /** Gives each client its sender in `run` and takes its socket over. */
  attach(run: LoadRun): void;
  close(): Promise<void>;
}

/**
 * Connects `clientCount` (even) clients to the server at `url` and pairs them.
 * With several URLs (nodes of one deployment) client i uses url i mod n, so
 * the two clients of a pair sit on different nodes.
 */
export async function connectFramePairs(
  url: string | readonly string[],
  clientCount: number,
  signal: AbortSignal,
): Promise<FramePairs> {
  const urls = typeof url === "string" ? [url] : url;
  if (clientCount < 2 || clientCount % 2 !== 0) throw new Error(`clients come in pairs; got ${clientCount}`);
  const drivers: FrameDriver[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all(drivers.map((driver) => closeDriver(driver)));
  };
  try {
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(SETUP_TIMEOUT_MS)]);
    const identities = await inBatches(clientCount, SETUP_CONCURRENCY, deadline, async (index) => {
      const driver = await FrameDriver.connect(urls[index % urls.length] ?? "");
      drivers[index] = driver;
      return driver.register(`bench-${index}`);
    });
    const chatIds = await inBatches(clientCount / 2, SETUP_CONCURRENCY, deadline, async (pair) => {
      const [driver, partner] = [drivers[2 * pair], identities[2 * pair + 1]];
      if (driver === undefined || partner === undefined) throw new Error(`pair ${pair} is incomplete`);
      return driver.createDirectChat(partner.userId);
    });
    await inBatches(clientCount, SETUP_CONCURRENCY, deadline, async (index) => {
      const driver = drivers[index];
      if (driver === undefined) throw new Error(`client ${index} is missing`);
      await driver.subscribe();
      await driver.waitFor(() => driver.isSynced(), "sync_complete");
    });
    const clients = drivers.map((driver, index) => {
      const chatId = chatIds[Math.floor(index / 2)];
      const identity = identities[index];
      if (chatId === undefined || identity === undefined) throw new Error(`no chat for client ${index}`);
      return new FrameLoadClient(driver.socket, chatId, identity.deviceId);
    });
    return {
      clientCount,
      get unexpected() {
        return clients.reduce((sum, client) => sum + client.unexpected, 0);
      },
      attach: (run) => {
        for (const client of clients) client.attachSender(run);
        clients.forEach((client, index) => {
          const partner = clients[index ^ 1];
          if (partner === undefined) throw new Error(`client ${index} has no partner`);
          client.takeOver(partner);
        });
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

class FrameLoadClient {
  private readonly socket: WebSocket;
  private readonly chatId: string;
  private readonly deviceId: string;
  private readonly payloadTemplate = new Uint8Array(randomBytes(PAYLOAD_BYTES));
  private outbound: WindowedSender | undefined;
  private inbound: WindowedSender | undefined;
  private ackThrough = 0;
  private isAckScheduled = false;
  unexpected = 0;

  constructor(socket: WebSocket, chatId: string, deviceId: string) {
    this.socket = socket;
    this.chatId = chatId;
    this.deviceId = deviceId;
  }

  attachSender(run: LoadRun): void {
    this.outbound = run.addSender((counter) => {
      this.transmit(counter);
    }, true);
  }

  /** From now on this loop, not the FrameDriver, reads the socket. */
  takeOver(partner: FrameLoadClient): void {
    this.inbound = partner.outbound;
    this.socket.removeAllListeners("message");
    this.socket.on("message", (data: Buffer) => {
      this.onData(data);
    });
  }

  private transmit(counter: number): void {
    const payload = this.payloadTemplate.slice();
    new DataView(payload.buffer).setUint32(0, counter);
    this.socket.send(
      encodeClientFrame({
        requestId: SEND_REQUEST_ID_BASE + counter,
        request: {
          $case: "sendMessage",
          value: { chatId: this.chatId, messageId: newMessageId(), payload, devicePayloads: [] },
        },
      }),
    );
  }

  private onData(data: Buffer): void {
    const receivedMs = performance.now();
    const frame = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    const { body, requestId } = frame;
    if (body.$case === "push") {
      const push = body.value.push;
      if (push?.$case === "message") {
        const { payload, seq, senderDeviceId } = push.value;
        // A chat's queue holds our own messages too (other devices of ours read them):
        // they are acked with the rest but are no delivery.
        if (senderDeviceId !== this.deviceId) {
          const counter = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
          this.inbound?.delivered(counter, receivedMs);
        }
        if (seq > this.ackThrough) this.ackThrough = seq;
        this.scheduleAck();
      } else if (push?.$case !== "receipt") {
        this.unexpected += 1;
      }
    } else if (body.$case === "sendMessage") {
      this.outbound?.answered(requestId - SEND_REQUEST_ID_BASE);
    } else if (body.$case === "error" && requestId >= SEND_REQUEST_ID_BASE) {
      this.outbound?.failed(requestId - SEND_REQUEST_ID_BASE);
    } else {
      this.unexpected += 1;
    }
  }

  /** One cumulative ack per burst of frames: after the I/O callbacks of this turn. */
  private scheduleAck(): void {
    if (this.isAckScheduled) return;
    this.isAckScheduled = true;
    setImmediate(() => {
      this.isAckScheduled = false;
      if (this.socket.readyState !== this.socket.OPEN) return;
      this.socket.send(
        encodeClientFrame({
          requestId: 0,
          request: { $case: "ack", value: { acks: [{ chatId: this.chatId, throughSeq: this.ackThrough }] } },
        }),
      );
    });
  }
}

/** Runs `task(0..count-1)` with at most `concurrency` at once; results by index. */
export async function inBatches<T>(
  count: number,
  concurrency: number,
  signal: AbortSignal,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < count; start += concurrency) {
    signal.throwIfAborted();
    const indexes = Array.from({ length: Math.min(concurrency, count - start) }, (_, i) => start + i);
    const batch = await Promise.all(indexes.map((index) => task(index)));
    batch.forEach((result, i) => (results[start + i] = result));
  }
  return results;
}

/** Closes a driver's socket, terminating it when the close handshake does not finish in time. */
export async function closeDriver(driver: FrameDriver): Promise<void> {
  if (driver.closeCode !== undefined) return;
  driver.close();
  const timer = setTimeout(() => driver.socket.terminate(), CLOSE_TIMEOUT_MS);
  await driver.closed;
  clearTimeout(timer);
}
