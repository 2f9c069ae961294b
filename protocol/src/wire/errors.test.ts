import { describe, expect, it } from "vitest";
import { DnsMessageError } from "../tunnel/dns-message.ts";
import { TunnelCryptoError } from "../tunnel/tunnel-cipher.ts";
import { TunnelNameError } from "../tunnel/tunnel-name.ts";
import { TunnelPacketError } from "../tunnel/tunnel-packet.ts";
import {
  DevicesChangedError,
  RemessengerError,
  errorCodeName,
  errorFromDetail,
  errorToDetail,
  isError,
  shouldRetry,
} from "./errors.ts";
import { GroupOperationError } from "./group-operation.ts";
import { InviteError } from "./invite.ts";
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

describe("one error base", () => {
  it("gives every protocol error a stable code, and retries only what can succeed later", () => {
    const cases: Array<[RemessengerError, ErrorCode, boolean]> = [
      [new TunnelPacketError("short"), ErrorCode.ERROR_CODE_BAD_FRAME, false],
      [new TunnelNameError("label too long"), ErrorCode.ERROR_CODE_BAD_FRAME, false],
      [new DnsMessageError("truncated"), ErrorCode.ERROR_CODE_BAD_FRAME, false],
      [new TunnelCryptoError("no key yet"), ErrorCode.ERROR_CODE_BAD_FRAME, false],
      [new InviteError("not an invite"), ErrorCode.ERROR_CODE_INVALID_ARGUMENT, false],
      [new GroupOperationError("not-admin", "only admins"), ErrorCode.ERROR_CODE_PERMISSION_DENIED, false],
      [new GroupOperationError("does-not-follow", "stale head"), ErrorCode.ERROR_CODE_GROUP_CHANGED, false],
      [new GroupOperationError("bad-signature", "forged"), ErrorCode.ERROR_CODE_UNAUTHENTICATED, false],
      [new GroupOperationError("wrong-epoch", "epoch 3"), ErrorCode.ERROR_CODE_INVALID_ARGUMENT, false],
      [new RemessengerError(ErrorCode.ERROR_CODE_UNDECRYPTABLE, "replayed"), ErrorCode.ERROR_CODE_UNDECRYPTABLE, false],
      [new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "store down"), ErrorCode.ERROR_CODE_UNAVAILABLE, true],
    ];
    for (const [error, code, isRetried] of cases) {
      expect(error).toBeInstanceOf(RemessengerError);
      expect(error.code, error.name).toBe(code);
      expect(shouldRetry(error), error.name).toBe(isRetried);
      expect(isError(error, code)).toBe(true);
    }
    expect(errorCodeName(ErrorCode.ERROR_CODE_UNDECRYPTABLE)).toBe("UNDECRYPTABLE");
    // Each subclass keeps its own name for logs.
    expect(new GroupOperationError("not-member", "x").name).toBe("GroupOperationError");
    expect(new TunnelPacketError("x").name).toBe("TunnelPacketError");
  });
});
