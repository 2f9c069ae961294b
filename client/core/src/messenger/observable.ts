/**
 * The one subscription contract the messenger API hands to UIs: a current
 * value plus `subscribe(listener) → unsubscribe`. Small enough that any UI
 * framework adapts it in a line (an Angular signal set from the listener, an
 * RxJS `new Observable(s => o.subscribe(v => s.next(v)))`), so the core needs
 * neither.
 *
 * Invariants: a listener is called with every value set after it subscribed,
 * in order, never with the value it subscribed at (read `value` for that);
 * setting an equal value (by `isSame`) notifies nobody; a listener that
 * throws does not stop the others (the error goes to `onListenerError`);
 * listeners are bounded, so a leak shows up as an error.
 */

/** A value that changes over time, for UIs to show. */
export interface Observable<T> {
  /** The current value. */
  readonly value: T;
  /** Calls `listener` with each later value; returns the function that stops it. */
  subscribe(listener: (value: T) => void): () => void;
}

/** Listeners one observable takes; more is a leak. */
export const MAX_SUBSCRIBERS = 100;

/** The writable side, kept by the model that owns the value. */
export class ObservableValue<T> implements Observable<T> {
  private current: T;
  private readonly listeners = new Set<(value: T) => void>();
  private readonly isSame: (a: T, b: T) => boolean;
  private readonly onListenerError: (error: unknown) => void;

  constructor(
    initial: T,
    options: { isSame?: (a: T, b: T) => boolean; onListenerError?: (error: unknown) => void } = {},
  ) {
    this.current = initial;
    this.isSame = options.isSame ?? Object.is;
    this.onListenerError = options.onListenerError ?? (() => undefined);
  }

  get value(): T {
    return this.current;
  }

  subscribe(listener: (value: T) => void): () => void {
    if (this.listeners.size >= MAX_SUBSCRIBERS) throw new Error(`more than ${MAX_SUBSCRIBERS} subscribers: a leak?`);
    // A wrapper, so the same function subscribed twice is two subscriptions.
    const entry = (value: T): void => {
      listener(value);
    };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /** Sets the value and tells every subscriber, unless it is the same as before. */
  set(value: T): void {
    if (this.isSame(this.current, value)) return;
    this.current = value;
    for (const listener of [...this.listeners]) {
      try {
        listener(value);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }
}
