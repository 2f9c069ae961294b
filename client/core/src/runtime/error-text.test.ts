import { describe, expect, it } from "vitest";
import { errorText } from "./error-text.ts";

describe("errorText", () => {
  it("shows an error's message with its cause's", () => {
    expect(errorText(new Error("fetch failed", { cause: new Error("ECONNREFUSED") }))).toBe(
      "fetch failed (ECONNREFUSED)",
    );
    expect(errorText(new Error("closed"))).toBe("closed");
  });

  it("shows a thrown string as it is, anything else as the fallback", () => {
    expect(errorText("gone")).toBe("gone");
    expect(errorText(42)).toBe("unknown error");
    expect(errorText(undefined, "")).toBe("");
  });
});
