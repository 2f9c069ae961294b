/**
 * A raw-frame client for the failure suites that behaves as a real client
 * must when nodes die: it keeps a list of node URLs, reconnects to the next
 * one by itself when its connection drops (logs in, subscribes, resumes from
 * its cursor), retries every unanswered send with the same message id, acks
 * what it stored, and keeps per chat what it accepted in order.
 *
 * It records the evidence the tests check: every answered send (message id →
 * seq), every pushed message in arrival order, and anything out of order.
 */
import { RemessengerError, shouldRetry, messageIdToHex, newMessageId, type Message } from "@remessenger/protocol";
import { FrameDriver, type Identity } from "../../scripts/harness/frame-driver.ts";

const RECONNECT_DEADLINE_MS = 30_000;
const RETRY_DELAY_MS = 100;
const SEND_DEADLINE_MS = 60_000;

export class FailoverClient {
  readonly urls: readonly string[];
  identity: Identity | undefined;
  /** Which URL the current connection went to. */
  current = 0;
  /** message id (hex) → seq, for every send the server answered. */
  readonly acked = new Map<string, number>();
  /** Per chat, the messages accepted in order (seq = previous + 1), as a client stores them. */
  readonly accepted = new Map<string, Message[]>();
  /** Per chat, seqs that arrived ahead of a missing one, waiting for it (must end empty). */
  readonly held = new Map<string, Map<number, Message>>();
  reconnects = 0;
  private driver: FrameDriver | undefined;
  private connecting: Promise<FrameDriver> | undefined;
  private seenPushes = 0;
  private isClosed = false;

  constructor(urls: readonly string[]) {
    this.urls = urls;
  }

  static async register(urls: readonly string[], name: string): Promise<FailoverClient> {
    const client = new FailoverClient(urls);
    const driver = await FrameDriver.connect(urls[0] ?? "");
    client.identity = await driver.register(name);
    driver.close();
    return client;
  }

  get nodeUrl(): string {
    return this.urls[this.current] ?? "";
  }

  highestSeq(chatId: string): number {
    return this.accepted.get(chatId)?.length ?? 0;
  }

  /** The live connection, made (on the current URL, then the next ones) when there is none. */
  connection(): Promise<FrameDriver> {
    if (this.driver !== undefined && this.driver.closeCode === undefined) return Promise.resolve(this.driver);
    this.connecting ??= this.reconnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async createDirectChat(otherUserId: string): Promise<string> {
    return (await this.connection()).createDirectChat(otherUserId);
  }

  /** Sends with one message id until the server answers (retrying through failovers). */
  async send(chatId: string, text: string): Promise<number> {
    const messageId = newMessageId();
    const deadline = Date.now() + SEND_DEADLINE_MS;
    for (;;) {
      try {
        const driver = await this.connection();
        const answer = await driver.send(chatId, text, messageId);
        this.acked.set(messageIdToHex(messageId), answer.seq);
        // A device stores its own message at the seq the server gave it (no echo comes when it had the rest).
        const own: Message = {
          chatId,
          seq: answer.seq,
          messageId,
          senderUserId: this.identity?.userId ?? "",
          senderDeviceId: this.identity?.deviceId ?? "",
          serverTimeMs: answer.serverTimeMs,
          payload: new TextEncoder().encode(text),
          devicePayloads: [],
        };
        this.offer(own);
        return answer.seq;
      } catch (error) {
        if (error instanceof RemessengerError && !shouldRetry(error)) throw error;
        if (Date.now() > deadline) throw new Error(`send not answered within ${SEND_DEADLINE_MS} ms`, { cause: error });
        await delay(RETRY_DELAY_MS);
      }
    }
  }

  /** Waits until the chat's accepted messages reach `seq`. */
  async waitForSeq(chatId: string, seq: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.highestSeq(chatId) < seq) {
      if (Date.now() > deadline) throw new Error(`chat ${chatId}: seq ${this.highestSeq(chatId)} of ${seq}`);
      const driver = await this.connection();
      await driver
        .waitFor(() => driver.closeCode !== undefined || this.highestSeq(chatId) >= seq, `seq ${seq}`, 1_000)
        .catch(() => undefined);
      this.take(driver);
    }
  }

  close(): void {
    this.isClosed = true;
    this.driver?.close();
  }

  private async reconnect(): Promise<FrameDriver> {
    const identity = this.identity;
    if (identity === undefined) throw new Error("register first");
    const deadline = Date.now() + RECONNECT_DEADLINE_MS;
    let lastError: unknown;
    while (Date.now() < deadline && !this.isClosed) {
      if (this.driver !== undefined) {
        // The previous node failed us: move on to the next one.
        this.current = (this.current + 1) % this.urls.length;
        this.reconnects += 1;
      }
      try {
        const driver = await FrameDriver.connect(this.nodeUrl);
        await driver.login(identity);
        this.driver = driver;
        this.seenPushes = 0;
        await driver.subscribe();
        driver.socket.on("message", () => {
          this.take(driver);
        });
        return driver;
      } catch (error) {
        lastError = error;
        this.driver ??= undefined;
        await delay(RETRY_DELAY_MS);
        if (this.driver === undefined) this.current = (this.current + 1) % this.urls.length;
      }
    }
    throw new Error(`no node answered within ${RECONNECT_DEADLINE_MS} ms`, { cause: lastError });
  }

  /** Accepts new pushes in order, as a client stores them, and acks them. */
  private take(driver: FrameDriver): void {
    if (driver !== this.driver) return;
    const pushes = driver.messages();
    const touched = new Set<string>();
    for (const message of pushes.slice(this.seenPushes)) {
      this.offer(message);
      touched.add(message.chatId);
    }
    this.seenPushes = pushes.length;
    for (const chatId of touched) driver.ack(chatId, this.highestSeq(chatId));
  }

  /** Stores the message if it is next; holds it if it is ahead; ignores it if stored already. */
  private offer(message: Message): void {
    const list = this.accepted.get(message.chatId) ?? [];
    this.accepted.set(message.chatId, list);
    const held = this.held.get(message.chatId) ?? new Map<number, Message>();
    this.held.set(message.chatId, held);
    if (message.seq <= list.length) return;
    held.set(message.seq, message);
    for (let next = held.get(list.length + 1); next !== undefined; next = held.get(list.length + 1)) {
      held.delete(next.seq);
      list.push(next);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
