import { describe, expect, it } from "vitest";
import { ObservableValue } from "./observable.ts";

describe("ObservableValue", () => {
  it("tells subscribers each later value in order, and stops after unsubscribe", () => {
    const value = new ObservableValue(0);
    const seen: number[] = [];
    const off = value.subscribe((v) => seen.push(v));
    value.set(1);
    value.set(2);
    off();
    value.set(3);
    expect(seen).toEqual([1, 2]);
    expect(value.value).toBe(3);
  });

  it("does not notify for an equal value", () => {
    const value = new ObservableValue({ n: 1 }, { isSame: (a, b) => a.n === b.n });
    const seen: number[] = [];
    value.subscribe((v) => seen.push(v.n));
    value.set({ n: 1 });
    value.set({ n: 2 });
    expect(seen).toEqual([2]);
  });

  it("keeps notifying the others when a listener throws", () => {
    const errors: unknown[] = [];
    const value = new ObservableValue(0, { onListenerError: (e) => errors.push(e) });
    const seen: number[] = [];
    value.subscribe(() => {
      throw new Error("boom");
    });
    value.subscribe((v) => seen.push(v));
    value.set(1);
    expect(seen).toEqual([1]);
    expect(errors).toHaveLength(1);
  });
});
