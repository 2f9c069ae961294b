/**
 * A listener that cannot bind says so in one line naming the flag to change,
 * instead of a stack trace or grpc-js's own wording. Node's listeners report
 * EADDRINUSE/EACCES as error codes; grpc-js folds them into the message of a
 * plain Error ("No address added ... [listen EADDRINUSE: ...]"), so both are
 * recognised here, once.
 */
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

/** A listener could not bind its address; the message names the flag that sets it. */
export class ListenError extends RemessengerError {
  override readonly name = "ListenError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, message, options);
  }
}

/**
 * Runs `listen` and turns a refused bind into a ListenError for `address`
 * (HOST:PORT as configured) and `flag` (e.g. "--grpc-listen"); any other
 * failure is rethrown as it was.
 */
export async function listenOrExplain<T>(listen: () => Promise<T>, address: string, flag: string): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    const text = error instanceof Error ? `${"code" in error ? String(error.code) : ""} ${error.message}` : "";
    if (/EADDRINUSE/.test(text)) {
      throw new ListenError(
        `${address} is already in use (another server running?); choose another address with ${flag} HOST:PORT`,
        { cause: error },
      );
    }
    if (/EACCES/.test(text)) {
      throw new ListenError(`not allowed to listen on ${address} (a port below 1024?); choose another with ${flag}`, {
        cause: error,
      });
    }
    if (/EADDRNOTAVAIL/.test(text)) {
      throw new ListenError(`${address} is not an address of this machine; choose another with ${flag}`, {
        cause: error,
      });
    }
    throw error;
  }
}
