/**
 * The one typed adapter between the session's units and the server: it
 * holds the logged-in connection (the ConnectionKeeper attaches and detaches
 * it) and makes each request the end-to-end and group layers, the sealer and
 * the receiver need, with the session's request deadline and lifetime.
 *
 * Invariants:
 * - Requests go only over a connection that is open and logged in; without
 *   one they fail at once with NeedsServerError (sealing never waits for a
 *   connection: an unsealed message waits in the outbox instead).
 * - A connection that was detached is never used again, even if a push of it
 *   is still being processed.
 */
import {
  type Chat,
  type ChatAck,
  type Message,
  type PreKeyBundle,
  type PreKeyStock,
  type PublishPreKeysRequest,
  type SendMessageRequest,
  type SendMessageResponse,
  type User,
  ErrorCode,
  RemessengerError,
} from "@remessenger/protocol";
import { type ConnectionMonitor, isLoggedIn } from "../connection/connection-state.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { E2eServer } from "../e2e/pairwise-sessions.ts";
import type { GroupServer } from "../group/group-sessions.ts";
import type { Connection, RequestKind, RequestValue, ResponseValue } from "./connection.ts";

export interface ServerApiOptions {
  /** Whether the session is logged in (a connection is usable only then). */
  monitor: ConnectionMonitor;
  requestTimeoutMs: number;
  /** The session's lifetime: its end aborts every request. */
  signal: AbortSignal;
}

export class ServerApi implements E2eServer, GroupServer {
  private readonly options: ServerApiOptions;
  private current: Connection | undefined;

  constructor(options: ServerApiOptions) {
    this.options = options;
  }

  /** The keeper logged in on `connection`: requests use it from now on. */
  attach(connection: Connection): void {
    this.current = connection;
  }

  /** `connection` is gone; a newer one that was attached since stays. */
  detach(connection: Connection): void {
    if (this.current === connection) this.current = undefined;
  }

  /** Whether `connection` is the open, attached one (its pushes may be stored and acked). */
  isCurrent(connection: Connection): boolean {
    return connection === this.current && connection.isOpen;
  }

  /** Whether a connection is attached and open (sends may start; login may still be settling). */
  get isOpen(): boolean {
    return this.current?.isOpen === true;
  }

  /** The connection when it is open and logged in. */
  ready(): Connection | undefined {
    const connection = this.current;
    return connection?.isOpen === true && isLoggedIn(this.options.monitor.status.state) ? connection : undefined;
  }

  /** Any request on the logged-in connection; NeedsServerError without one. */
  request<K extends RequestKind>(kind: K, value: RequestValue<K>): Promise<ResponseValue<K>> {
    const connection = this.ready();
    if (connection === undefined) return Promise.reject(new NeedsServerError(`not connected (${kind})`));
    return connection.request(kind, value, {
      timeoutMs: this.options.requestTimeoutMs,
      signal: this.options.signal,
    });
  }

  async getUser(userId: string): Promise<User> {
    return required((await this.request("getUser", { userId })).user, "user");
  }

  async getChat(chatId: string): Promise<Chat> {
    return required((await this.request("getChat", { chatId })).chat, "chat");
  }

  async getPreKeyBundles(userId: string, deviceIds: readonly string[]): Promise<PreKeyBundle[]> {
    return (await this.request("getPreKeyBundles", { userId, deviceIds: [...deviceIds] })).bundles;
  }

  async publishPreKeys(request: PublishPreKeysRequest): Promise<PreKeyStock> {
    return required((await this.request("publishPreKeys", request)).stock, "stock");
  }

  async getGroupOperations(chatId: string, afterSeq: number, limit: number): Promise<Message[]> {
    return (await this.request("getGroupOperations", { chatId, afterSeq, limit })).operations;
  }

  sendMessage(request: SendMessageRequest): Promise<SendMessageResponse> {
    return this.request("sendMessage", request);
  }

  /**
   * Acks without an answer (request id 0) on the attached connection; false
   * when the pipe is closed or just closed (the next connection acks again
   * what the server resends).
   */
  notifyAcks(acks: ChatAck[]): boolean {
    const connection = this.current;
    if (connection?.isOpen !== true) return false;
    connection.notify("ack", { acks });
    return true;
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `the server sent no ${what}`);
  return value;
}
