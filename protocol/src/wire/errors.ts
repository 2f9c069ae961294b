/**
 * The one error base of the whole codebase (protocol, server, client core).
 * Every failure a peer reports carries a stable ErrorCode from proto/, and so
 * does every failure the code raises on purpose: each error class extends
 * RemessengerError with its code, so `isError(err, code)` and `shouldRetry`
 * answer for all of them; callers branch on the code, never on text.
 *
 * Invariant: a plain `Error` is a bug (a broken invariant, an impossible
 * state). It is never shown to a peer as anything but INTERNAL, and
 * scripts/repo-checks.test.ts refuses any other error class.
 */
import { type DevicesChanged, ErrorCode, type ErrorDetail } from "./proto.ts";

export class RemessengerError extends Error {
  override readonly name: string = "RemessengerError";
  readonly code: ErrorCode;
  /** Server's hint for RATE_LIMITED / UNAVAILABLE; 0 when it gave none. */
  readonly retryAfterMs: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs ?? 0;
  }
}

/**
 * DEVICES_CHANGED: a send did not cover exactly the recipient devices the
 * server knows. The sender seals for `missingDeviceIds`, drops the payloads of
 * `staleDeviceIds`, and sends the same message id again.
 */
export class DevicesChangedError extends RemessengerError {
  readonly missingDeviceIds: readonly string[];
  readonly staleDeviceIds: readonly string[];

  constructor(message: string, devices: DevicesChanged) {
    super(ErrorCode.ERROR_CODE_DEVICES_CHANGED, message);
    this.missingDeviceIds = [...devices.missingDeviceIds];
    this.staleDeviceIds = [...devices.staleDeviceIds];
  }
}

/** The error a peer reported in an ErrorDetail, with its details (the one decoder of error frames). */
export function errorFromDetail(detail: ErrorDetail): RemessengerError {
  const message = detail.message || errorCodeName(detail.code);
  if (detail.code === ErrorCode.ERROR_CODE_DEVICES_CHANGED) {
    return new DevicesChangedError(message, detail.devicesChanged ?? { missingDeviceIds: [], staleDeviceIds: [] });
  }
  return new RemessengerError(detail.code, message, { retryAfterMs: detail.retryAfterMs });
}

/** The ErrorDetail that reports `error` to a peer (the one encoder; unknown errors are the caller's to hide). */
export function errorToDetail(error: RemessengerError): ErrorDetail {
  return {
    code: error.code,
    message: error.message,
    retryAfterMs: error.retryAfterMs,
    devicesChanged:
      error instanceof DevicesChangedError
        ? { missingDeviceIds: [...error.missingDeviceIds], staleDeviceIds: [...error.staleDeviceIds] }
        : undefined,
  };
}

/** True when `err` is a RemessengerError with this code. */
export function isError(err: unknown, code: ErrorCode): err is RemessengerError {
  return err instanceof RemessengerError && err.code === code;
}

/**
 * Whether repeating the same request later can succeed. Permanent refusals
 * (bad input, permission, not found) return false: retrying them only hides them.
 */
export function shouldRetry(err: unknown): boolean {
  if (!(err instanceof RemessengerError)) return true; // network faults and the like
  switch (err.code) {
    case ErrorCode.ERROR_CODE_RATE_LIMITED:
    case ErrorCode.ERROR_CODE_UNAVAILABLE:
    case ErrorCode.ERROR_CODE_INTERNAL:
    case ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED:
    case ErrorCode.ERROR_CODE_UNSPECIFIED:
      return true;
    // DEVICES_CHANGED, GROUP_CHANGED: the same bytes would be refused again; a sender that
    // reseals (or drafts the operation again on the group's new head) makes a new request.
    case ErrorCode.ERROR_CODE_DEVICES_CHANGED:
    case ErrorCode.ERROR_CODE_GROUP_CHANGED:
    case ErrorCode.ERROR_CODE_BAD_FRAME:
    case ErrorCode.ERROR_CODE_INVALID_ARGUMENT:
    case ErrorCode.ERROR_CODE_UNAUTHENTICATED:
    case ErrorCode.ERROR_CODE_PERMISSION_DENIED:
    case ErrorCode.ERROR_CODE_NOT_FOUND:
    case ErrorCode.ERROR_CODE_ALREADY_EXISTS:
    case ErrorCode.ERROR_CODE_TOO_LARGE:
    case ErrorCode.ERROR_CODE_UNIMPLEMENTED:
    case ErrorCode.ERROR_CODE_UNDECRYPTABLE: // the same bytes never open later; the sender must seal anew
      return false;
    default:
      return assertNever(err.code);
  }
}

/** Short stable name of a code for logs and CLI output ("NOT_FOUND"). */
export function errorCodeName(code: ErrorCode): string {
  const entry = Object.entries(ErrorCode).find(([, value]) => value === code);
  return entry ? entry[0].replace(/^ERROR_CODE_/, "") : `CODE_${code}`;
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${String(value)}`);
}
