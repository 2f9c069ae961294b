/**
 * Sends go to the node that owns the chat's shard: this node's chat actor
 * when it holds the lease, else the owner over the node link (forwarding).
 *
 * - Order: a send is handed to the actor or to the link synchronously when
 *   the owner is known, so sends from one connection to one chat keep their
 *   order; sends that wait for an owner to be found wait on one shared
 *   promise per shard and keep their order too.
 * - A send refused because the owner changed (NotOwnerError: lease lost,
 *   fenced, handed over) is routed again after a short pause, at most
 *   MAX_ROUTE_ATTEMPTS times; the same message id makes a repeat harmless.
 * - A forwarded send is never forwarded again: its receiver owns the shard,
 *   takes it when free, or refuses.
 */
import type { SendMessageRequest, SendMessageResponse } from "@remessenger/protocol";
import { type NodeInfo, NotOwnerError, type ShardLeases, type ShardRoute } from "./lease.ts";

/** What the router asks of the leases (ShardLeases), one shard at a time. */
export type ShardDirectory = Pick<ShardLeases, "route" | "resolve" | "tokenFor" | "markLost" | "forget">;
import { shardOf } from "./shard-placement.ts";

/**
 * Pauses before routing a send again: the owner is changing (a handover, a
 * takeover, a node another node does not list yet) and settles within a lease
 * tick (a third of the lease TTL, 1.7 s by default): together they wait out
 * more than one tick.
 */
export const ROUTE_RETRY_DELAYS_MS = [20, 100, 300, 1_000, 1_000] as const;
export const MAX_ROUTE_ATTEMPTS = ROUTE_RETRY_DELAYS_MS.length + 1;

/** A device as its own node authenticated it. */
export interface SendingDevice {
  userId: string;
  deviceId: string;
}

/** The node link: carries a send to the node that owns its chat. */
export interface SendForwarder {
  forward(node: NodeInfo, device: SendingDevice, request: SendMessageRequest): Promise<SendMessageResponse>;
}

export interface ChatRouterStats {
  forwarded: number;
  rerouted: number;
  fenced: number;
}

export class ChatRouter {
  private readonly leases: ShardDirectory;
  private readonly forwarder: SendForwarder;
  private readonly counters: ChatRouterStats = { forwarded: 0, rerouted: 0, fenced: 0 };
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    leases: ShardDirectory,
    forwarder: SendForwarder,
    sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  ) {
    this.leases = leases;
    this.forwarder = forwarder;
    this.sleep = sleep;
  }

  get stats(): ChatRouterStats {
    return { ...this.counters };
  }

  /** The lease token to write the chat with, or undefined when this node must not write it. */
  tokenFor(chatId: string): number | undefined {
    return this.leases.tokenFor(shardOf(chatId));
  }

  /** The store refused a write of the chat: its shard belongs to a newer owner. */
  onFenced(chatId: string): void {
    this.counters.fenced += 1;
    this.leases.markLost(shardOf(chatId));
  }

  /** Routes a send from a device connected here. `sendLocal` queues it in this node's actor. */
  send(
    device: SendingDevice,
    request: SendMessageRequest,
    sendLocal: () => Promise<SendMessageResponse>,
  ): Promise<SendMessageResponse> {
    return this.attempt(device, request, sendLocal, 1);
  }

  /** A send another node forwarded here: served here or refused, never forwarded on. */
  acceptForwarded(
    request: SendMessageRequest,
    sendLocal: () => Promise<SendMessageResponse>,
  ): Promise<SendMessageResponse> {
    const shard = shardOf(request.chatId);
    const route = this.leases.route(shard);
    if (route?.kind === "local") return sendLocal();
    return this.leases.resolve(shard, true).then((resolved) => {
      if (resolved.kind === "local") return sendLocal();
      throw new NotOwnerError(shard, "is not owned by this node");
    });
  }

  private attempt(
    device: SendingDevice,
    request: SendMessageRequest,
    sendLocal: () => Promise<SendMessageResponse>,
    attempt: number,
  ): Promise<SendMessageResponse> {
    const shard = shardOf(request.chatId);
    const known = this.leases.route(shard);
    const sending =
      known !== undefined
        ? this.via(known, device, request, sendLocal)
        : this.leases.resolve(shard).then((route) => this.via(route, device, request, sendLocal));
    return sending.catch(async (error: unknown) => {
      if (!isRoutingError(error) || attempt >= MAX_ROUTE_ATTEMPTS) throw error;
      this.counters.rerouted += 1;
      this.leases.forget(shard);
      await this.sleep(ROUTE_RETRY_DELAYS_MS[attempt - 1] ?? 1_000);
      return this.attempt(device, request, sendLocal, attempt + 1);
    });
  }

  private via(
    route: ShardRoute,
    device: SendingDevice,
    request: SendMessageRequest,
    sendLocal: () => Promise<SendMessageResponse>,
  ): Promise<SendMessageResponse> {
    switch (route.kind) {
      case "local":
        return sendLocal();
      case "remote":
        this.counters.forwarded += 1;
        return this.forwarder.forward(route.node, device, request);
      case "unavailable":
        // No live owner known here yet (e.g. one that joined after this node's last tick): route again.
        return Promise.reject(new NotOwnerError(shardOf(request.chatId), route.reason));
    }
  }
}

/** The owner changed under the send (here, or at the node it was forwarded to): worth routing again. */
function isRoutingError(error: unknown): boolean {
  return error instanceof NotOwnerError;
}
