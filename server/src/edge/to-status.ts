/**
 * Errors leave the server only through here: a RemessengerError keeps its code
 * and text; anything else is a bug whose details stay in the log, and the peer
 * sees INTERNAL.
 *
 * On gRPC and gRPC-web the status code says what kind of failure it was, and
 * the whole ErrorDetail (our code, device lists, retry_after_ms) travels in the
 * `grpc-status-details-bin` trailer as a google.rpc.Status (toGrpcFailure), so
 * a client acts on fields, not on English text.
 */
import { Status } from "nice-grpc";
import {
  RemessengerError,
  assertNever,
  encodeStatusDetails,
  errorToDetail,
  ErrorCode,
  type ErrorDetail,
} from "@remessenger/protocol";
import { recordError } from "./metrics.ts";

/** What a gRPC or gRPC-web call ends with when it fails. */
export interface GrpcFailure {
  status: Status;
  detail: ErrorDetail;
  /** The `grpc-status-details-bin` value: a google.rpc.Status holding `detail`. */
  statusDetails: Uint8Array;
}

export function toGrpcFailure(error: unknown): GrpcFailure {
  const detail = toErrorDetail(error);
  const status = toGrpcStatus(detail.code);
  return { status, detail, statusDetails: encodeStatusDetails(status, detail) };
}

export function toErrorDetail(error: unknown): ErrorDetail {
  const detail: ErrorDetail =
    error instanceof RemessengerError
      ? errorToDetail(error)
      : { code: ErrorCode.ERROR_CODE_INTERNAL, message: "internal error", retryAfterMs: 0, devicesChanged: undefined };
  recordError(detail.code);
  return detail;
}

export function isInternal(error: unknown): boolean {
  return !(error instanceof RemessengerError) || error.code === ErrorCode.ERROR_CODE_INTERNAL;
}

export function toGrpcStatus(code: ErrorCode): Status {
  switch (code) {
    case ErrorCode.ERROR_CODE_BAD_FRAME:
    case ErrorCode.ERROR_CODE_INVALID_ARGUMENT:
    case ErrorCode.ERROR_CODE_UNDECRYPTABLE:
      return Status.INVALID_ARGUMENT;
    case ErrorCode.ERROR_CODE_UNAUTHENTICATED:
      return Status.UNAUTHENTICATED;
    case ErrorCode.ERROR_CODE_PERMISSION_DENIED:
      return Status.PERMISSION_DENIED;
    case ErrorCode.ERROR_CODE_NOT_FOUND:
      return Status.NOT_FOUND;
    case ErrorCode.ERROR_CODE_ALREADY_EXISTS:
      return Status.ALREADY_EXISTS;
    case ErrorCode.ERROR_CODE_TOO_LARGE:
    case ErrorCode.ERROR_CODE_RATE_LIMITED:
      return Status.RESOURCE_EXHAUSTED;
    case ErrorCode.ERROR_CODE_UNAVAILABLE:
      return Status.UNAVAILABLE;
    case ErrorCode.ERROR_CODE_UNIMPLEMENTED:
      return Status.UNIMPLEMENTED;
    case ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED:
      return Status.DEADLINE_EXCEEDED;
    case ErrorCode.ERROR_CODE_DEVICES_CHANGED:
    case ErrorCode.ERROR_CODE_GROUP_CHANGED:
      return Status.FAILED_PRECONDITION;
    case ErrorCode.ERROR_CODE_INTERNAL:
    case ErrorCode.ERROR_CODE_UNSPECIFIED:
      return Status.INTERNAL;
    default:
      return assertNever(code);
  }
}
