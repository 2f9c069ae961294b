/**
 * A small typed event emitter: `Events` maps each event name to its payload
 * type, so a listener can only be attached with the right signature.
 *
 * A listener that throws does not stop the others nor the emitter's owner: the
 * error goes to `onListenerError` (the owner logs it). Listeners per event are
 * bounded, so a leak shows up as an error instead of growing memory.
 */

export const MAX_LISTENERS_PER_EVENT = 100;

export type Listener<T> = (value: T) => void;

export class TypedEmitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();
  private readonly onListenerError: (error: unknown, event: keyof Events) => void;

  constructor(onListenerError: (error: unknown, event: keyof Events) => void) {
    this.onListenerError = onListenerError;
  }

  /** Attaches `listener`; returns the function that detaches it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    if (set.size >= MAX_LISTENERS_PER_EVENT) {
      throw new Error(`more than ${MAX_LISTENERS_PER_EVENT} listeners on "${String(event)}": a leak?`);
    }
    set.add(listener);
    return () => {
      this.off(event, listener);
    };
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener);
  }

  emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    // A copy: a listener may detach itself (or others) while we iterate.
    for (const listener of [...set] as Array<Listener<Events[K]>>) {
      try {
        listener(value);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }
}
