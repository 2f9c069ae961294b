/**
 * The two ways sealing pairwise can stop short: a contact's identity changed
 * (sending to that user waits until it is accepted), or the server is needed
 * and not reachable (the message waits, unsealed, in the outbox).
 */
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

/** Sending to this user is blocked until its changed identity is accepted. */
export class IdentityChangedError extends RemessengerError {
  readonly userId: string;
  constructor(userId: string, detail: string) {
    super(
      ErrorCode.ERROR_CODE_PERMISSION_DENIED,
      `the identity of ${userId} changed (${detail}); check it with "remessenger verify ${userId}" and accept it with --accept`,
    );
    this.userId = userId;
  }
}

/** A message could not be sealed now because the server is needed (sessions to fetch). */
export class NeedsServerError extends RemessengerError {
  override readonly name = "NeedsServerError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, message, options);
  }
}
