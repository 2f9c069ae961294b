import { describe, expect, it } from "vitest";
import { Content } from "@remessenger/protocol";
import { TEXT_ONLY_REASON, textOnlyRefusal } from "./text-only.ts";

describe("text-only mode on plain DNS", () => {
  const text = Content.fromPartial({ body: { $case: "text", value: "hi" } });
  const other = Content.fromPartial({});

  it("lets text through on every pipe", () => {
    for (const kind of ["websocket", "https", "doh", "dns"] as const)
      expect(textOnlyRefusal(kind, text)).toBeUndefined();
  });

  it("holds anything else on plain DNS with a reason the user sees, and lets it through elsewhere", () => {
    expect(textOnlyRefusal("dns", other)).toContain(TEXT_ONLY_REASON);
    expect(textOnlyRefusal("doh", other)).toBeUndefined();
  });
});
