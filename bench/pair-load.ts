/**
 * The load every transport in the spine benchmark carries, whatever protocol
 * it speaks: clients in pairs, each sending fixed-size messages to its
 * partner and receiving its partner's.
 *
 * - A sender keeps at most `window` messages in flight. A message is in flight
 *   from the send call until the partner received it and, where the protocol
 *   answers sends (ours does, once the message is durable), the answer came.
 *   So the figure is how fast the server moves messages end to end, and
 *   latency is not the depth of a queue the load generator let grow.
 * - Latency is send call start → message received by the partner, one sample
 *   per message delivered in the measured window (bounded by maxMessages).
 * - Phases: warm-up (not counted), measured window (ends after measureMs or
 *   maxMessages deliveries, whichever first), drain (no new sends; waits at
 *   most drainTimeoutMs for what is in flight). Every phase is bounded.
 */

export interface LoadPlan {
  /** Messages in flight per sender. */
  window: number;
  warmupMs: number;
  measureMs: number;
  /** The measured window ends once this many messages were delivered in it. */
  maxMessages: number;
  drainTimeoutMs: number;
}

export interface LoadOutcome {
  /** Messages received by partners in the measured window. */
  delivered: number;
  seconds: number;
  messagesPerSecond: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Sends the server refused (error answers), in any phase. */
  failed: number;
  /** Messages received twice by one connection (should stay 0). */
  duplicates: number;
  /** Still in flight when the drain gave up (should stay 0). */
  undelivered: number;
}

/** Called at the edges of the measured window, to sample server CPU and the like. */
export interface WindowHooks {
  onMeasureStart(): void;
  onMeasureEnd(): void;
}

type Phase = "idle" | "warmup" | "measuring" | "draining" | "done";

const ANSWERED = 1;
const DELIVERED = 2;
const COMPLETE = ANSWERED | DELIVERED;

export class LoadRun {
  private readonly plan: LoadPlan;
  private readonly senders: WindowedSender[] = [];
  private readonly samples: Float64Array;
  private phase: Phase = "idle";
  private delivered = 0;
  private failed = 0;
  private duplicates = 0;
  private wake: (() => void) | undefined;

  constructor(plan: LoadPlan) {
    this.plan = plan;
    this.samples = new Float64Array(plan.maxMessages);
  }

  get isSending(): boolean {
    return this.phase === "warmup" || this.phase === "measuring";
  }

  /**
   * A new sender; `transmit(counter)` must send message `counter` to the
   * partner. `isAnswered`: the protocol answers each send, and the message
   * stays in flight until that answer too.
   */
  addSender(transmit: (counter: number) => void, isAnswered: boolean): WindowedSender {
    const sender = new WindowedSender(this, this.plan.window, transmit, isAnswered);
    this.senders.push(sender);
    return sender;
  }

  /** Runs the phases; rejects with the abort reason when `signal` aborts. */
  async execute(signal: AbortSignal, hooks: WindowHooks): Promise<LoadOutcome> {
    let seconds: number;
    try {
      this.phase = "warmup";
      for (const sender of this.senders) sender.fill();
      await this.waitUntil(() => false, this.plan.warmupMs, signal);

      this.phase = "measuring";
      hooks.onMeasureStart();
      const started = performance.now();
      await this.waitUntil(() => this.delivered >= this.plan.maxMessages, this.plan.measureMs, signal);
      seconds = (performance.now() - started) / 1_000;
      this.phase = "draining";
      hooks.onMeasureEnd();

      await this.waitUntil(() => this.inFlight() === 0, this.plan.drainTimeoutMs, signal);
    } finally {
      // Also on abort: no sender may start another message once the run is over.
      this.phase = "done";
    }

    const sorted = this.samples.slice(0, Math.min(this.delivered, this.samples.length)).sort();
    return {
      delivered: this.delivered,
      seconds,
      messagesPerSecond: this.delivered / seconds,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      failed: this.failed,
      duplicates: this.duplicates,
      undelivered: this.inFlight(),
    };
  }

  /** @internal A message reached the partner `latencyMs` after its send started. */
  recordDelivery(latencyMs: number): void {
    if (this.phase !== "measuring") return;
    if (this.delivered < this.samples.length) this.samples[this.delivered] = latencyMs;
    this.delivered += 1;
    if (this.delivered >= this.plan.maxMessages) this.wake?.();
  }

  /** @internal */
  recordFailure(): void {
    this.failed += 1;
  }

  /** @internal */
  recordDuplicate(): void {
    this.duplicates += 1;
  }

  /** @internal A sender has nothing in flight any more. */
  onSenderIdle(): void {
    if (this.phase === "draining" && this.inFlight() === 0) this.wake?.();
  }

  private inFlight(): number {
    let total = 0;
    for (const sender of this.senders) total += sender.inFlight;
    return total;
  }

  private async waitUntil(isDone: () => boolean, timeoutMs: number, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (isDone()) return;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const timer = setTimeout(resolve, timeoutMs);
    const onAbort = (): void => {
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.wake = () => {
      if (isDone()) resolve();
    };
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      this.wake = undefined;
    }
  }
}

/**
 * One client's outgoing stream: numbers messages 0, 1, 2... and keeps a ring of
 * `window` slots. Message c lives in slot c % window, and c + window is sent
 * only once c is settled, so lookups need no map. (Messages may settle out of
 * order, e.g. a send the server retried: the ring then holds the sender back,
 * as a transport window does, rather than reuse a slot still in flight.)
 */
export class WindowedSender {
  private readonly run: LoadRun;
  private readonly window: number;
  private readonly transmit: (counter: number) => void;
  private readonly initialFlags: number;
  private readonly startedMs: Float64Array;
  private readonly counters: Float64Array;
  private readonly flags: Uint8Array;
  private next = 0;
  private isFilling = false;
  inFlight = 0;

  constructor(run: LoadRun, window: number, transmit: (counter: number) => void, isAnswered: boolean) {
    this.run = run;
    this.window = window;
    this.transmit = transmit;
    this.initialFlags = isAnswered ? 0 : ANSWERED;
    this.startedMs = new Float64Array(window);
    this.counters = new Float64Array(window).fill(-1);
    this.flags = new Uint8Array(window);
  }

  /** Sends until the window is full or the run stops sending. */
  fill(): void {
    // transmit() may answer synchronously in tests; one loop at a time.
    if (this.isFilling) return;
    this.isFilling = true;
    try {
      while (this.run.isSending && this.inFlight < this.window) {
        const counter = this.next;
        const slot = counter % this.window;
        if (this.counters[slot] !== -1) break;
        this.next += 1;
        this.counters[slot] = counter;
        this.flags[slot] = this.initialFlags;
        this.inFlight += 1;
        this.startedMs[slot] = performance.now();
        this.transmit(counter);
      }
    } finally {
      this.isFilling = false;
    }
  }

  /** The server answered the send of `counter` (durable, for us). */
  answered(counter: number): void {
    const slot = this.slotOf(counter);
    if (slot === undefined) return;
    this.settle(slot, ANSWERED);
  }

  /** The partner received message `counter` at `atMs` (performance.now()). */
  delivered(counter: number, atMs: number): void {
    const slot = this.slotOf(counter);
    const flags = slot === undefined ? DELIVERED : (this.flags[slot] ?? 0);
    if (slot === undefined || (flags & DELIVERED) !== 0) {
      this.run.recordDuplicate();
      return;
    }
    this.run.recordDelivery(atMs - (this.startedMs[slot] ?? atMs));
    this.settle(slot, DELIVERED);
  }

  /**
   * The send failed or the server refused it: it will never be delivered. The
   * slot is freed without sending another message in its place, so a broken
   * connection cannot spin the sender (the next delivery refills the window).
   */
  failed(counter: number): void {
    const slot = this.slotOf(counter);
    if (slot === undefined) return;
    this.run.recordFailure();
    this.settle(slot, COMPLETE, false);
  }

  private slotOf(counter: number): number | undefined {
    const slot = counter % this.window;
    return this.counters[slot] === counter ? slot : undefined;
  }

  private settle(slot: number, flag: number, isRefilling = true): void {
    const flags = (this.flags[slot] ?? 0) | flag;
    this.flags[slot] = flags;
    if (flags !== COMPLETE) return;
    this.counters[slot] = -1;
    this.inFlight -= 1;
    if (this.inFlight === 0) this.run.onSenderIdle();
    if (isRefilling) this.fill();
  }
}

/** Nearest-rank percentile of ascending `sorted`; null when empty. */
export function percentile(sorted: Float64Array, fraction: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(fraction * sorted.length));
  return sorted[rank - 1] ?? null;
}
