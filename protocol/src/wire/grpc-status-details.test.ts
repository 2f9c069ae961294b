/**
 * The `grpc-status-details-bin` codec: what the server packs, any client
 * unpacks unchanged; bytes of another shape give undefined, never a guess.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeStatusDetails, encodeStatusDetails, ERROR_DETAIL_TYPE_URL } from "./grpc-status-details.ts";
import { ErrorCode, ErrorDetail, RpcStatus } from "./proto.ts";

const codes = Object.values(ErrorCode).filter((value): value is ErrorCode => typeof value === "number");

describe("grpc-status-details", () => {
  it("gives back every detail it packed, as a google.rpc.Status with the ErrorDetail type URL", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...codes),
        fc.string(),
        fc.nat(),
        fc.array(fc.string()),
        fc.array(fc.string()),
        fc.integer({ min: 0, max: 16 }),
        (code, message, retryAfterMs, missingDeviceIds, staleDeviceIds, grpcCode) => {
          const detail: ErrorDetail = {
            code,
            message,
            retryAfterMs,
            devicesChanged: { missingDeviceIds, staleDeviceIds },
          };
          const bytes = encodeStatusDetails(grpcCode, detail);
          expect(decodeStatusDetails(bytes)).toEqual(detail);
          const status = RpcStatus.decode(bytes);
          expect({ code: status.code, message: status.message, typeUrl: status.details[0]?.typeUrl }).toEqual({
            code: grpcCode,
            message,
            typeUrl: ERROR_DETAIL_TYPE_URL,
          });
        },
      ),
    );
  });

  it("finds nothing in bytes that are no Status or carry no ErrorDetail", () => {
    expect(decodeStatusDetails(new Uint8Array([0x0f, 1, 2]))).toBeUndefined();
    const foreign = RpcStatus.encode({
      code: 3,
      message: "x",
      details: [{ typeUrl: "type.googleapis.com/google.rpc.BadRequest", value: new Uint8Array([1]) }],
    }).finish();
    expect(decodeStatusDetails(foreign)).toBeUndefined();
  });
});
