/**
 * The node link: sends for a chat whose shard another node owns travel to
 * that owner over node-to-node gRPC (proto/remessenger/internal/v1).
 *
 * Why gRPC and not Redis streams: one hop instead of two (no XADD + XREAD
 * through Redis), no polling, no extra Redis load per message, and an answer
 * arrives on the same stream it was asked on. Nodes still find each other
 * through Redis (the node list in core/lease.ts).
 *
 * - One bidirectional ForwardSendBatches stream per pair of nodes, opened on
 *   first use: sends leave in the order the forwarding node got them, and the
 *   owner hands each to its chat actor in that order. Answers come back in any
 *   order, matched by correlation id.
 * - Both directions batch: the sends a node forwards to one peer in one turn
 *   of its event loop leave as one stream message (bounded in bytes), and the
 *   answers ready in one turn go back as one. gRPC's cost per stream message
 *   (framing, its call filters, promises) is then paid per batch: under load
 *   it was most of the link's CPU.
 * - Calls carry a node token: HMAC-SHA256 of the caller's node id under the
 *   server secret, which every node of the deployment shares through the store.
 * - A stream that breaks fails its pending sends with UNAVAILABLE (the client
 *   retries them by message id) and is opened again on the next send.
 * - Pending sends per peer are bounded; beyond, senders are told to retry.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";
import {
  type CallContext,
  type Channel,
  type Server,
  ServerError,
  Status,
  createChannel,
  createClient,
  createServer,
  Metadata,
} from "nice-grpc";
import type { Logger } from "pino";
import {
  RemessengerError,
  errorFromDetail,
  MAX_FRAME_BYTES,
  ErrorCode,
  type ForwardSendBatchesRequest,
  type ForwardSendBatchesResponse,
  type ForwardedAnswer,
  type ForwardedSend,
  type NodeServiceClient,
  NodeServiceDefinition,
  SendMessageRequest,
  type SendMessageResponse,
} from "@remessenger/protocol";
import type { SendForwarder, SendingDevice } from "../core/chat-routing.ts";
import { type NodeInfo, NotOwnerError } from "../core/lease.ts";
import type { Messenger } from "../core/messenger.ts";
import { toErrorDetail } from "./to-status.ts";

/** Sends waiting for an answer from one peer; beyond, new ones are refused with RATE_LIMITED. */
export const MAX_PENDING_FORWARDS = 20_000;
/** A forwarded send not answered within this long fails with UNAVAILABLE (the client retries). */
export const FORWARD_TIMEOUT_MS = 10_000;
/**
 * A batch of forwarded sends stops growing at this many bytes of sends (a
 * single send may be up to MAX_FRAME_BYTES); the stream's message limit is
 * twice that.
 */
const MAX_BATCH_BYTES = MAX_FRAME_BYTES;
/** How often a peer's pending sends are checked against FORWARD_TIMEOUT_MS. */
const TIMEOUT_SWEEP_MS = 1_000;

export function nodeToken(secret: Uint8Array, nodeId: string): string {
  return createHmac("sha256", secret).update(`remessenger-node:${nodeId}`).digest("base64url");
}

export interface NodeLinkServerOptions {
  messenger: Messenger;
  secret: Uint8Array;
  log: Logger;
  /** Counts sends served for other nodes (metrics). */
  onForwardedIn?(): void;
}

/** The owner's side: serves the ForwardSends streams of the other nodes. */
export class NodeLinkServer {
  private readonly server: Server;

  constructor(options: NodeLinkServerOptions) {
    const { messenger, secret, log } = options;
    this.server = createServer({
      "grpc.max_receive_message_length": MAX_FRAME_BYTES * 2,
      "grpc.max_send_message_length": MAX_FRAME_BYTES * 2,
    });
    this.server.add(NodeServiceDefinition, {
      async *forwardSendBatches(requests: AsyncIterable<ForwardSendBatchesRequest>, context: CallContext) {
        const caller = authenticateNode(context, secret);
        const answers = new AsyncQueue<ForwardSendBatchesResponse>();
        const ready = new TurnBatcher<ForwardedAnswer>((batch) => {
          answers.push({ answers: batch });
        });
        let pending = 0;
        let isInputDone = false;
        const finishIfDone = (): void => {
          if (isInputDone && pending === 0) {
            ready.flush();
            answers.end();
          }
        };
        // Read batches in the background and hand each send to the Messenger in arrival order.
        void (async () => {
          try {
            for await (const batch of requests) {
              for (const request of batch.sends) {
                pending += 1;
                options.onForwardedIn?.();
                answer(messenger, request).then(
                  (response) => {
                    ready.add(response);
                    pending -= 1;
                    finishIfDone();
                  },
                  (error: unknown) => {
                    log.error({ err: error, caller }, "forwarded send failed");
                    pending -= 1;
                    finishIfDone();
                  },
                );
              }
            }
          } catch (error) {
            log.warn({ err: error, caller }, "node link stream ended with an error");
          } finally {
            isInputDone = true;
            finishIfDone();
          }
        })();
        yield* answers;
      },
    });
  }

  async listen(address: string): Promise<number> {
    return this.server.listen(address, ServerCredentials.createInsecure());
  }

  /**
   * Ends every stream. Called once this node's chats are drained, so the
   * answers are out; the peers' streams never end by themselves, so a
   * graceful shutdown would wait forever. An answer cut off here fails
   * over to the client's retry, which the message id makes harmless.
   */
  async close(): Promise<void> {
    this.server.forceShutdown();
    await Promise.resolve();
  }
}

/** Never rejects: every outcome is an answer to the forwarding node. */
async function answer(messenger: Messenger, request: ForwardedSend): Promise<ForwardedAnswer> {
  const { correlationId, userId, deviceId, send } = request;
  try {
    if (send === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "no send");
    const sent = await messenger.acceptForwardedSend({ userId, deviceId }, send);
    return { correlationId, result: { $case: "sent", value: sent }, isNotOwner: false };
  } catch (error) {
    return {
      correlationId,
      result: { $case: "error", value: toErrorDetail(error) },
      isNotOwner: error instanceof NotOwnerError,
    };
  }
}

function authenticateNode(context: CallContext, secret: Uint8Array): string {
  const nodeId = context.metadata.get("x-remessenger-node") ?? "";
  const token = /^Bearer (.+)$/.exec(context.metadata.get("authorization") ?? "")?.[1] ?? "";
  const expected = Buffer.from(nodeToken(secret, nodeId));
  const given = Buffer.from(token);
  if (nodeId === "" || expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new ServerError(Status.UNAUTHENTICATED, "not a node of this deployment");
  }
  return nodeId;
}

/** A forwarded send's encoded size, from above: its bytes plus room for ids and tags. */
function sizeOfSend(send: ForwardedSend): number {
  const request = send.send;
  if (request === undefined) return 256;
  if (request.groupOperation !== undefined) return SendMessageRequest.encode(request).finish().byteLength + 256;
  let bytes = 256 + request.payload.byteLength;
  for (const devicePayload of request.devicePayloads) bytes += devicePayload.ciphertext.byteLength + 64;
  return bytes;
}

interface PendingForward {
  resolve(response: SendMessageResponse): void;
  reject(error: unknown): void;
  /** When it fails with UNAVAILABLE unless answered (Date.now() scale). */
  deadlineMs: number;
}

/**
 * Collects items added during one turn of the event loop and hands them on
 * together (setImmediate: after every I/O callback of the turn), in order, in
 * batches of at most `maxBytes` (by `sizeOf`; an item alone may exceed it).
 */
class TurnBatcher<T> {
  private readonly deliver: (batch: T[]) => void;
  private readonly sizeOf: (item: T) => number;
  private readonly maxBytes: number;
  private items: T[] = [];
  private bytes = 0;
  private isScheduled = false;

  constructor(deliver: (batch: T[]) => void, sizeOf: (item: T) => number = () => 0, maxBytes = Infinity) {
    this.deliver = deliver;
    this.sizeOf = sizeOf;
    this.maxBytes = maxBytes;
  }

  add(item: T): void {
    const size = this.sizeOf(item);
    if (this.items.length > 0 && this.bytes + size > this.maxBytes) this.flush();
    this.items.push(item);
    this.bytes += size;
    if (this.isScheduled) return;
    this.isScheduled = true;
    setImmediate(() => {
      this.isScheduled = false;
      this.flush();
    });
  }

  flush(): void {
    if (this.items.length === 0) return;
    const batch = this.items;
    this.items = [];
    this.bytes = 0;
    this.deliver(batch);
  }
}

/** One peer: a channel, the open stream (if any) and its pending sends. */
class PeerLink {
  readonly address: string;
  private readonly channel: Channel;
  private readonly client: NodeServiceClient;
  private readonly metadata: Metadata;
  private readonly log: Logger;
  private requests: AsyncQueue<ForwardSendBatchesRequest> | undefined;
  private abort: AbortController | undefined;
  /** In the order sent, so deadlines grow along it. */
  private readonly pending = new Map<number, PendingForward>();
  private readonly outbox = new TurnBatcher<ForwardedSend>(
    (sends) => {
      this.stream().push({ sends });
    },
    sizeOfSend,
    MAX_BATCH_BYTES,
  );
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(address: string, selfId: string, secret: Uint8Array, log: Logger) {
    this.address = address;
    this.log = log;
    this.channel = createChannel(address, ChannelCredentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_FRAME_BYTES * 2,
      "grpc.max_send_message_length": MAX_FRAME_BYTES * 2,
    });
    this.client = createClient(NodeServiceDefinition, this.channel);
    this.metadata = Metadata({ "x-remessenger-node": selfId, authorization: `Bearer ${nodeToken(secret, selfId)}` });
  }

  send(correlationId: number, device: SendingDevice, request: SendMessageRequest): Promise<SendMessageResponse> {
    if (this.pending.size >= MAX_PENDING_FORWARDS) {
      return Promise.reject(
        new RemessengerError(ErrorCode.ERROR_CODE_RATE_LIMITED, "too many sends in flight to the chat's node", {
          retryAfterMs: 200,
        }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<SendMessageResponse>();
    this.pending.set(correlationId, { resolve, reject, deadlineMs: Date.now() + FORWARD_TIMEOUT_MS });
    this.sweeper ??= setInterval(() => {
      this.failOverdue();
    }, TIMEOUT_SWEEP_MS).unref();
    this.outbox.add({ correlationId, userId: device.userId, deviceId: device.deviceId, send: request });
    return promise;
  }

  close(): void {
    clearInterval(this.sweeper);
    this.abort?.abort();
    this.failAll(unavailable("node link closed"));
    this.channel.close();
  }

  /** Fails the sends past their deadline (the oldest come first in `pending`). */
  private failOverdue(): void {
    const now = Date.now();
    for (const [correlationId, waiting] of this.pending) {
      if (waiting.deadlineMs > now) break;
      this.pending.delete(correlationId);
      waiting.reject(unavailable(`no answer from node ${this.address} within ${FORWARD_TIMEOUT_MS} ms`));
    }
  }

  private stream(): AsyncQueue<ForwardSendBatchesRequest> {
    if (this.requests !== undefined) return this.requests;
    const requests = new AsyncQueue<ForwardSendBatchesRequest>();
    const abort = new AbortController();
    this.requests = requests;
    this.abort = abort;
    void (async () => {
      try {
        for await (const batch of this.client.forwardSendBatches(requests, {
          metadata: this.metadata,
          signal: abort.signal,
        })) {
          for (const answer of batch.answers) this.settle(answer);
        }
        this.failAll(unavailable(`node ${this.address} ended the link`));
      } catch (error) {
        this.log.warn({ err: error, peer: this.address }, "node link broke");
        this.failAll(unavailable(`node ${this.address} unreachable`, error));
      } finally {
        if (this.requests === requests) {
          this.requests = undefined;
          this.abort = undefined;
        }
        requests.end();
      }
    })();
    return requests;
  }

  private settle(response: ForwardedAnswer): void {
    const waiting = this.pending.get(response.correlationId);
    if (waiting === undefined) return;
    this.pending.delete(response.correlationId);
    const { result } = response;
    if (result?.$case === "sent") {
      waiting.resolve(result.value);
      return;
    }
    const detail = result?.value ?? {
      code: ErrorCode.ERROR_CODE_INTERNAL,
      message: "empty answer",
      retryAfterMs: 0,
      devicesChanged: undefined,
    };
    if (response.isNotOwner) {
      waiting.reject(new NotOwnerError(-1, `is not owned by node ${this.address} (${detail.message})`));
      return;
    }
    waiting.reject(errorFromDetail(detail));
  }

  private failAll(error: RemessengerError): void {
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

/** The forwarding side: implements SendForwarder over one PeerLink per node. */
export class NodeLinks implements SendForwarder {
  private readonly selfId: string;
  private readonly secret: Uint8Array;
  private readonly log: Logger;
  private readonly peers = new Map<string, PeerLink>();
  private nextCorrelationId = 1;

  constructor(selfId: string, secret: Uint8Array, log: Logger) {
    this.selfId = selfId;
    this.secret = secret;
    this.log = log;
  }

  forward(node: NodeInfo, device: SendingDevice, request: SendMessageRequest): Promise<SendMessageResponse> {
    let peer = this.peers.get(node.nodeId);
    if (peer !== undefined && peer.address !== node.address) {
      peer.close(); // the node restarted elsewhere
      peer = undefined;
    }
    if (peer === undefined) {
      peer = new PeerLink(node.address, this.selfId, this.secret, this.log.child({ peerNode: node.nodeId }));
      this.peers.set(node.nodeId, peer);
    }
    const correlationId = this.nextCorrelationId;
    this.nextCorrelationId += 1;
    return peer.send(correlationId, device, request);
  }

  close(): void {
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
  }
}

function unavailable(message: string, cause?: unknown): RemessengerError {
  return new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, message, { cause, retryAfterMs: 500 });
}

/**
 * An unbounded-by-type but bounded-by-caller async queue: push() from
 * callbacks, consume with for-await. end() finishes the iteration.
 */
class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private isEnded = false;

  push(item: T): void {
    if (this.isEnded) return;
    this.items.push(item);
    this.wake?.();
  }

  end(): void {
    this.isEnded = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.isEnded) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}
