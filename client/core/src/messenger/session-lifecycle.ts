/**
 * The life of a messenger's session: idle → running ⇄ suspended → stopped.
 * A stopped session cannot start again, so every resume makes a fresh one
 * from the factory, on the same stores and keys; suspend and resume work any
 * number of times (an Android app is suspended and resumed all day).
 *
 * Invariants: transitions apply one at a time, in call order (quick
 * background/foreground flips never overlap); at most one session exists,
 * and it is attached (its events wired) before it starts and detached after
 * it stopped; a stopped lifecycle never runs again.
 */
import type { MessengerSession, MessengerSessionFactory, MessengerSessionOptions } from "./messenger-session.ts";
import { ObservableValue, type Observable } from "./observable.ts";
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

/** Where a messenger is in its life. */
export type MessengerLifecycle = "idle" | "running" | "suspended" | "stopped";

/** A messenger call that needs a running session, made while there is none. */
export class MessengerNotRunningError extends RemessengerError {
  override readonly name = "MessengerNotRunningError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, message, options);
  }
}

export interface SessionLifecycleHooks {
  /** Wires the session's events; returns the function that unwires them. */
  attach(session: MessengerSession): () => void;
  /** Runs before each session is made (reload what views need). */
  beforeRun(): Promise<void>;
  /** Runs after each session started. */
  afterRun(): void;
}

export class SessionLifecycle {
  private readonly factory: MessengerSessionFactory;
  private readonly options: MessengerSessionOptions;
  private readonly hooks: SessionLifecycleHooks;
  private readonly value = new ObservableValue<MessengerLifecycle>("idle");
  private session: MessengerSession | undefined;
  private detach: (() => void) | undefined;
  private transition: Promise<void> = Promise.resolve();

  constructor(factory: MessengerSessionFactory, options: MessengerSessionOptions, hooks: SessionLifecycleHooks) {
    this.factory = factory;
    this.options = options;
    this.hooks = hooks;
  }

  get state(): Observable<MessengerLifecycle> {
    return this.value;
  }

  /** The running session; throws MessengerNotRunningError when there is none. */
  current(): MessengerSession {
    if (this.session === undefined) {
      throw new MessengerNotRunningError(`the messenger is ${this.value.value}, not running`);
    }
    return this.session;
  }

  start(): Promise<void> {
    return this.step(async () => {
      if (this.value.value !== "idle") throw new Error(`the messenger is ${this.value.value}`);
      await this.run();
    });
  }

  stop(): Promise<void> {
    return this.step(async () => {
      await this.halt();
      this.value.set("stopped");
    });
  }

  suspend(): Promise<void> {
    return this.step(async () => {
      if (this.value.value !== "running") return;
      await this.halt();
      this.value.set("suspended");
    });
  }

  resume(): Promise<void> {
    return this.step(async () => {
      if (this.value.value !== "suspended") return;
      await this.run();
    });
  }

  private step(work: () => Promise<void>): Promise<void> {
    const next = this.transition.then(work);
    // The next transition runs after this one whether it failed or not; the caller sees the failure.
    this.transition = next.catch(() => undefined);
    return next;
  }

  private async run(): Promise<void> {
    await this.hooks.beforeRun();
    const session = this.factory(this.options);
    this.detach = this.hooks.attach(session);
    this.session = session;
    try {
      await session.start();
    } catch (error) {
      this.session = undefined;
      this.unwire();
      throw error;
    }
    this.value.set("running");
    this.hooks.afterRun();
  }

  private async halt(): Promise<void> {
    const session = this.session;
    if (session === undefined) return;
    this.session = undefined;
    try {
      await session.stop();
    } finally {
      this.unwire();
    }
  }

  private unwire(): void {
    this.detach?.();
    this.detach = undefined;
  }
}
