/** The pure reseal rules: which payloads go, which devices are added, and when a reseal is refused. */
import { type SendMessageRequest, isError, ErrorCode } from "@remessenger/protocol";
import { describe, expect, it } from "vitest";
import { applyReseal, planReseal } from "./pairwise-reseal.ts";

const CHAT = "c" + "a".repeat(26);

describe("planReseal and applyReseal", () => {
  const request: SendMessageRequest = {
    chatId: CHAT,
    messageId: new Uint8Array(16),
    payload: new Uint8Array(0),
    devicePayloads: [
      { deviceId: "d1", ciphertext: new Uint8Array([1]) },
      { deviceId: "d2", ciphertext: new Uint8Array([2]) },
    ],
  };

  it("drops stale payloads, adds missing devices, and keeps every other payload as it was", () => {
    const plan = planReseal(["d1", "d2"], ["d1", "d3"], { missingDeviceIds: ["d3"], staleDeviceIds: ["d2"] });
    expect(plan).toEqual({ drop: ["d2"], add: ["d3"] });
    const next = applyReseal(request, plan.drop, [{ deviceId: "d3", ciphertext: new Uint8Array([3]) }]);
    expect(next.devicePayloads.map((p) => p.deviceId)).toEqual(["d1", "d3"]);
    expect(next.devicePayloads[0]).toBe(request.devicePayloads[0]);
    expect(next.messageId).toBe(request.messageId);
  });

  it("refuses (retryably) a missing device it cannot see, and a change that changes nothing", () => {
    expect(() => planReseal(["d1"], ["d1"], { missingDeviceIds: ["d9"], staleDeviceIds: [] })).toThrow(/cannot see/);
    expect(() => planReseal(["d1"], ["d1"], { missingDeviceIds: ["d1"], staleDeviceIds: ["d7"] })).toThrow(
      /already matches/,
    );
    const refusal = ((): unknown => {
      try {
        return planReseal(["d1"], ["d1"], { missingDeviceIds: [], staleDeviceIds: [] });
      } catch (error) {
        return error;
      }
    })();
    expect(isError(refusal, ErrorCode.ERROR_CODE_UNAVAILABLE)).toBe(true);
  });
});
