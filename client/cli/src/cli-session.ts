/**
 * How CLI commands get a messenger: built from the opened profile, with pino
 * diagnostics on stderr, and a "connect once" wait for commands that should
 * fail fast instead of retrying (a short first attempt, then an answer).
 * Every command talks to the server through the Messenger only.
 */
import { pino } from "pino";
import {
  type FirstAttempt,
  type Logger,
  Messenger,
  type MessengerSessionOptions,
  clientSessionFactory,
} from "@remessenger/client-core";
import type { CliConfig } from "./cli-config.ts";
import { CliError } from "./cli-error.ts";
import type { Output } from "./output.ts";
import { type OpenProfile, endpointsOf, openProfile } from "./profile.ts";
import { transportFactoryFor } from "./transport/cli-transports.ts";

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

export function createMessenger(
  context: CommandContext,
  opened: OpenProfile,
  options: MessengerSessionOptions,
): Messenger {
  const { config, logger } = context;
  const messenger = new Messenger({
    store: opened.store,
    profile: opened.profile,
    signer: opened.signer,
    sessions: clientSessionFactory({
      profile: opened.profile,
      signer: opened.signer,
      store: opened.store,
      e2e: opened.e2e,
      logger,
      groupWindow: config.groupWindow,
      signedPreKeys: config.signedPreKeys,
      transports: () => transportFactoryFor(config, endpointsOf(opened.profile), logger),
    }),
    session: options,
    logger,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
  });
  messenger.events.on("problem", ({ context: where, error }) => {
    context.output.note(`warning: failed while ${where}: ${error instanceof Error ? error.message : String(error)}`);
  });
  return messenger;
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
  const opened = await openProfile(context.config.profileDir, context.config);
  try {
    return await runMessenger(context, opened, options, body);
  } finally {
    await opened.store.close();
  }
}

/** Runs `body` with a started messenger on a profile opened already, and stops it afterwards. */
export async function runMessenger<T>(
  context: CommandContext,
  opened: OpenProfile,
  options: MessengerSessionOptions & { setup?: (messenger: Messenger) => void },
  body: (messenger: Messenger, opened: OpenProfile) => Promise<T>,
): Promise<T> {
  const { setup, ...sessionOptions } = options;
  const messenger = createMessenger(context, opened, sessionOptions);
  setup?.(messenger);
  await messenger.start();
  try {
    return await body(messenger, opened);
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
