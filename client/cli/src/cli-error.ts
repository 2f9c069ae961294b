/**
 * Errors the CLI expects, and how each ends the process: a one-line message
 * on stderr and an exit code scripts can branch on — never a stack trace.
 *
 * Exit codes: 0 success; 1 the operation failed (server unreachable, refused,
 * timed out); 2 bad input (malformed id, unknown chat or user, no profile).
 */
import { RemessengerError, errorCodeName } from "@remessenger/client-core";
import { KeyFileError } from "@remessenger/client-core/node";
import { ErrorCode } from "@remessenger/protocol";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A failure with a message meant for the user. */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: number;
  /** Stable code for --json output ("USAGE", "UNAVAILABLE", "NOT_FOUND"...). */
  readonly code: string;

  constructor(message: string, options: { exitCode?: number; code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
    this.code = options.code ?? (this.exitCode === EXIT_USAGE ? "USAGE" : "FAILED");
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, { exitCode: EXIT_USAGE });
}

/** Server answers that mean the input was wrong, not that something broke. */
const INPUT_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
  ErrorCode.ERROR_CODE_NOT_FOUND,
  ErrorCode.ERROR_CODE_PERMISSION_DENIED,
  ErrorCode.ERROR_CODE_TOO_LARGE,
  ErrorCode.ERROR_CODE_ALREADY_EXISTS,
]);

/** What the user sees for any error: expected ones plainly, anything else as an internal error. */
export function describeFailure(error: unknown): {
  message: string;
  code: string;
  exitCode: number;
  isExpected: boolean;
} {
  if (error instanceof CliError) {
    return { message: error.message, code: error.code, exitCode: error.exitCode, isExpected: true };
  }
  // The profile's key file (missing keychain key, wrong passphrase): the user's to fix, as a usage error.
  if (error instanceof KeyFileError) {
    return { message: error.message, code: "USAGE", exitCode: EXIT_USAGE, isExpected: true };
  }
  if (error instanceof RemessengerError) {
    return {
      message: error.message,
      code: errorCodeName(error.code),
      exitCode: INPUT_CODES.has(error.code) ? EXIT_USAGE : EXIT_FAILURE,
      isExpected: true,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { message: `internal error: ${message}`, code: "INTERNAL", exitCode: EXIT_FAILURE, isExpected: false };
}
