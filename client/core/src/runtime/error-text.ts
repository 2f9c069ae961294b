/**
 * One way to turn a caught value into the text a connection state, a log
 * line or a wrapping error shows: an Error's message with its cause's
 * message in brackets (a fetch "failed" says little without its cause), a
 * thrown string as it is, anything else the fallback.
 */
export function errorText(value: unknown, fallback = "unknown error"): string {
  if (value instanceof Error) {
    const cause = value.cause instanceof Error ? ` (${value.cause.message})` : "";
    return `${value.message}${cause}`;
  }
  return typeof value === "string" ? value : fallback;
}
