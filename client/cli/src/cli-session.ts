/**
 * How CLI commands get a messenger: the core opens the profile and builds it
 * (profile.ts supplies the Node parts), with pino diagnostics on stderr, and
 * a "connect once" wait for commands that should fail fast instead of
 * retrying (a short first attempt, then an answer). Every command talks to
 * the server through the Messenger only.
 */
import { pino } from "pino";
import { type FirstAttempt, type Logger, type Messenger, type MessengerSessionOptions } from "@remessenger/client-core";
import type { CliConfig } from "./cli-config.ts";
import { CliError } from "./cli-error.ts";
import type { Output } from "./output.ts";
import { type OpenProfile, openProfile } from "./profile.ts";
import { transportProblem } from "./transport/cli-transports.ts";

export function createLogger(config: CliConfig): Logger {
  return pino(
    { level: config.logLevel, base: { service: "remessenger-cli" } },
    pino.destination({ fd: 2, sync: true }),
  );
}

export interface CommandContext {
  config: CliConfig;
  output: Output;
  logger: Logger;
  /** Aborted by SIGINT / SIGTERM. */
  signal: AbortSignal;
}

/** How long one-shot commands give the first connection attempt. */
export const FIRST_ATTEMPT_TIMEOUT_MS = 5_000;
/** Deadline of one request once connected. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** Opens the command's profile with a messenger built (not started) for `session`. */
export function openCommandProfile(context: CommandContext, session: MessengerSessionOptions): Promise<OpenProfile> {
  return openProfile(context.config.profileDir, context.config, {
    logger: context.logger,
    session,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
  });
}

/** The first connection attempt of a started messenger, cut short by SIGINT. */
export function firstAttempt(context: CommandContext, messenger: Messenger, timeoutMs: number): Promise<FirstAttempt> {
  return messenger.firstAttempt(timeoutMs, context.signal);
}

/**
 * Opens the profile, runs `body` with a started messenger, and always stops
 * it and closes the store afterwards.
 */
export async function withMessenger<T>(
  context: CommandContext,
  options: MessengerSessionOptions & {
    /** Attaches listeners before the messenger starts, so no event is missed. */
    setup?: (messenger: Messenger) => void;
  },
  body: (messenger: Messenger, opened: OpenProfile) => Promise<T>,
): Promise<T> {
  const { setup, ...session } = options;
  const opened = await openCommandProfile(context, session);
  try {
    return await runMessenger(context, opened.messenger, setup, (messenger) => body(messenger, opened));
  } finally {
    await opened.store.close();
  }
}

/** Starts a messenger built already, runs `body`, and stops it afterwards; its problems are warnings on stderr. */
export async function runMessenger<T>(
  context: CommandContext,
  messenger: Messenger,
  setup: ((messenger: Messenger) => void) | undefined,
  body: (messenger: Messenger) => Promise<T>,
): Promise<T> {
  messenger.events.on("problem", ({ context: where, error }) => {
    context.output.note(`warning: failed while ${where}: ${error instanceof Error ? error.message : String(error)}`);
  });
  setup?.(messenger);
  try {
    await messenger.start();
  } catch (error) {
    // The pipe is built at start: a --transport the profile cannot serve is refused here.
    throw transportProblem(error, messenger.profile.serverUrl);
  }
  try {
    return await body(messenger);
  } finally {
    await messenger.stop();
  }
}

/** Connects or throws a CliError saying why the server could not be reached. */
export async function connectOrFail(context: CommandContext, messenger: Messenger, opened: OpenProfile): Promise<void> {
  const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
  if (attempt.kind === "offline") {
    throw new CliError(`cannot reach the server at ${opened.profile.serverUrl}: ${attempt.reason}`, {
      code: "UNAVAILABLE",
    });
  }
}
