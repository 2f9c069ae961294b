/**
 * Structured logs (pino, JSON lines on stdout). Fields name what a line is
 * about (chatId, deviceId, transport, reason); never a plaintext, a key or a
 * whole ciphertext.
 */
import { pino, type Logger } from "pino";

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "remessenger" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ["sessionToken", "signature", "payload", "identityKey"],
  });
}
