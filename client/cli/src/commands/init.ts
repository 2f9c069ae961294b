/**
 * `remessenger init --name NAME`: creates the profile — a fresh identity key,
 * registered with the server as a new user — and prints the user id.
 * The key is on disk before the server hears of it.
 */
import { join } from "node:path";
import {
  ErrorCode,
  isError,
  registerNewDevice,
  selectEd25519Provider,
  webSocketTransportFactory,
} from "../../../core/src/index.ts";
import { MAX_DISPLAY_NAME_CHARS } from "../../../core/src/wire/limits.ts";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import type { CommandContext } from "../cli-session.ts";
import { DATABASE_FILE, ensureProfileDir, readIdentitySeed, signerFromSeed, writeIdentitySeed } from "../profile.ts";
import { SqliteClientStore } from "../sqlite-client-store.ts";

const REGISTER_TIMEOUT_MS = 10_000;

export async function initCommand(context: CommandContext, options: { name: string }): Promise<void> {
  const { config, output } = context;
  const name = options.name.trim();
  // The server counts code points, as Array.from does.
  if (name.length === 0 || Array.from(name).length > MAX_DISPLAY_NAME_CHARS) {
    throw usageError(`--name must be 1 to ${MAX_DISPLAY_NAME_CHARS} characters`);
  }
  const dir = config.profileDir;
  ensureProfileDir(dir);
  const store = SqliteClientStore.open(join(dir, DATABASE_FILE));
  try {
    const existing = await store.getProfile();
    if (existing !== undefined) {
      throw usageError(`${dir} is initialized already: user ${existing.userId}, device ${existing.deviceId}`);
    }
    // A key left by an init that crashed before registering is reused, not replaced.
    let seed = readIdentitySeed(dir);
    if (seed === undefined) {
      seed = (await selectEd25519Provider()).generateSeed();
      writeIdentitySeed(dir, seed);
    }
    const serverUrl = config.explicitServerUrl ?? DEFAULT_SERVER_URL;
    let registered;
    try {
      registered = await registerNewDevice({
        transports: webSocketTransportFactory({ serverUrl }),
        signer: await signerFromSeed(seed),
        displayName: name,
        timeoutMs: REGISTER_TIMEOUT_MS,
        signal: context.signal,
        logger: context.logger,
      });
    } catch (error) {
      if (isError(error, ErrorCode.ERROR_CODE_UNAVAILABLE) || isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)) {
        throw new CliError(`cannot register with ${serverUrl}: ${error.message}`, {
          code: "UNAVAILABLE",
          cause: error,
        });
      }
      throw error;
    }
    await store.saveProfile({
      serverUrl,
      userId: registered.userId,
      deviceId: registered.deviceId,
      displayName: name,
      registeredAtMs: registered.serverTimeMs,
    });
    output.print({ userId: registered.userId, deviceId: registered.deviceId }, registered.userId);
  } finally {
    await store.close();
  }
}
