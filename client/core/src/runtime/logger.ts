/**
 * The logging port of the core: the structured `(fields, message)` shape that
 * pino has, so the CLI passes a pino logger and a browser a console adapter.
 * Fields carry ids (chatId, deviceId) and reasons; never plaintext or keys.
 */
export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const ignore = (): void => undefined;

export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
