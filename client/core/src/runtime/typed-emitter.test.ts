import { describe, expect, it } from "vitest";
import { MAX_LISTENERS_PER_EVENT, TypedEmitter } from "./typed-emitter.ts";

interface Events {
  count: number;
  name: string;
}

describe("TypedEmitter", () => {
  it("calls the listeners of an event with its payload until they detach", () => {
    const emitter = new TypedEmitter<Events>(() => undefined);
    const seen: number[] = [];
    const off = emitter.on("count", (n) => seen.push(n));
    emitter.emit("count", 1);
    emitter.emit("name", "ignored");
    off();
    emitter.emit("count", 2);
    expect(seen).toEqual([1]);
    expect(emitter.listenerCount("count")).toBe(0);
  });

  it("reports a throwing listener and still calls the others", () => {
    const errors: unknown[] = [];
    const emitter = new TypedEmitter<Events>((error) => errors.push(error));
    const seen: string[] = [];
    emitter.on("name", () => {
      throw new Error("boom");
    });
    emitter.on("name", (name) => seen.push(name));
    emitter.emit("name", "x");
    expect(seen).toEqual(["x"]);
    expect(errors).toHaveLength(1);
  });

  it("lets a listener detach itself during an emit", () => {
    const emitter = new TypedEmitter<Events>(() => undefined);
    const seen: number[] = [];
    const off = emitter.on("count", (n) => {
      seen.push(n);
      off();
    });
    emitter.emit("count", 1);
    emitter.emit("count", 2);
    expect(seen).toEqual([1]);
  });

  it("refuses listeners beyond the limit", () => {
    const emitter = new TypedEmitter<Events>(() => undefined);
    for (let i = 0; i < MAX_LISTENERS_PER_EVENT; i++) emitter.on("count", () => undefined);
    expect(() => emitter.on("count", () => undefined)).toThrow(/leak/);
  });
});
