/**
 * The one way to leave a promise unawaited on purpose: its failure still goes
 * somewhere (`onError`), so nothing fails silently.
 */
export function drop(promise: Promise<unknown>, onError: (error: unknown) => void): void {
  promise.then(undefined, onError);
}
