import { describe, expect, it } from "vitest";
import { DevicesChangedError, RemessengerError, errorFromDetail, errorToDetail, shouldRetry } from "./errors.ts";
import { ErrorCode, ErrorDetail } from "./proto.ts";

describe("error details", () => {
  it("carries the missing and stale devices of DEVICES_CHANGED through the wire and back", () => {
    const sent = new DevicesChangedError("devices changed", { missingDeviceIds: ["d-new"], staleDeviceIds: ["d-old"] });
    const bytes = ErrorDetail.encode(errorToDetail(sent)).finish();
    const back = errorFromDetail(ErrorDetail.decode(bytes));
    expect(back).toBeInstanceOf(DevicesChangedError);
    expect(back).toMatchObject({
      code: ErrorCode.ERROR_CODE_DEVICES_CHANGED,
      message: "devices changed",
      missingDeviceIds: ["d-new"],
      staleDeviceIds: ["d-old"],
    });
    expect(shouldRetry(back)).toBe(false);
  });

  it("keeps code, text and retry hint of other errors, and names a code when the text is empty", () => {
    const limited = errorFromDetail(
      errorToDetail(new RemessengerError(ErrorCode.ERROR_CODE_RATE_LIMITED, "slow down", { retryAfterMs: 300 })),
    );
    expect(limited).not.toBeInstanceOf(DevicesChangedError);
    expect(limited).toMatchObject({ code: ErrorCode.ERROR_CODE_RATE_LIMITED, message: "slow down", retryAfterMs: 300 });
    const bare = errorFromDetail({
      code: ErrorCode.ERROR_CODE_DEVICES_CHANGED,
      message: "",
      retryAfterMs: 0,
      devicesChanged: undefined,
    });
    expect(bare).toMatchObject({ message: "DEVICES_CHANGED", missingDeviceIds: [], staleDeviceIds: [] });
  });
});
