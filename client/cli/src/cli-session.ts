/**
 * How CLI commands get a session: built from the opened profile, with pino
 * diagnostics on stderr, and a "connect once" wait for commands that should
 * fail fast instead of retrying (a short first attempt, then an answer).
 */
import { pino } from "pino";
import {
  ClientSession,
  type ClientSessionOptions,
  type ConnectionStatus,
  type Logger,
  isFinal,
  isLoggedIn,
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

export function createSession(
  context: CommandContext,
  opened: OpenProfile,
  options: Pick<ClientSessionOptions, "subscribe" | "sendOutbox" | "timing">,
): ClientSession {
  const { subscribe, sendOutbox, timing } = options;
  const session = new ClientSession({
    transports: transportFactoryFor(context.config, endpointsOf(opened.profile), context.logger),
    profile: opened.profile,
    signer: opened.signer,
    store: opened.store,
    e2e: opened.e2e,
    logger: context.logger,
    groupWindow: context.config.groupWindow,
    signedPreKeys: context.config.signedPreKeys,
    ...(subscribe === undefined ? {} : { subscribe }),
    ...(sendOutbox === undefined ? {} : { sendOutbox }),
    ...(timing === undefined ? {} : { timing }),
  });
  session.events.on("problem", ({ context: where, error }) => {
    context.output.note(`warning: failed while ${where}: ${error instanceof Error ? error.message : String(error)}`);
  });
  return session;
}

export type FirstAttempt = { kind: "connected" } | { kind: "offline"; reason: string };

/**
 * Waits for the session's first attempt: logged in, or failed (with the
 * reason), or nothing within `timeoutMs`. The session keeps retrying
 * afterwards; the caller decides whether to wait longer.
 */
export function firstAttempt(session: ClientSession, timeoutMs: number, signal: AbortSignal): Promise<FirstAttempt> {
  const verdict = (status: ConnectionStatus): FirstAttempt | undefined => {
    if (isLoggedIn(status.state)) return { kind: "connected" };
    if (status.state === "offline" || isFinal(status.state)) {
      return { kind: "offline", reason: status.lastFailure?.reason ?? status.state };
    }
    return undefined;
  };
  const now = verdict(session.status);
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve) => {
    const finish = (result: FirstAttempt): void => {
      clearTimeout(timer);
      off();
      signal.removeEventListener("abort", onAbort);
      resolve(result);
    };
    const onAbort = (): void => {
      finish({ kind: "offline", reason: "interrupted" });
    };
    const timer = setTimeout(() => {
      finish({ kind: "offline", reason: `no connection within ${timeoutMs} ms` });
    }, timeoutMs);
    const off = session.events.on("connection", (status) => {
      const result = verdict(status);
      if (result !== undefined) finish(result);
    });
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** How long one-shot commands give the first connection attempt. */
export const FIRST_ATTEMPT_TIMEOUT_MS = 5_000;
/** Deadline of one request once connected. */
export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Opens the profile, runs `body` with a started session, and always stops the
 * session and closes the store afterwards.
 */
export async function withSession<T>(
  context: CommandContext,
  options: Pick<ClientSessionOptions, "subscribe" | "sendOutbox" | "timing"> & {
    /** Attaches listeners before the session starts, so no event is missed. */
    setup?: (session: ClientSession) => void;
  },
  body: (session: ClientSession, opened: OpenProfile) => Promise<T>,
): Promise<T> {
  const opened = await openProfile(context.config.profileDir, context.config);
  try {
    const session = createSession(context, opened, options);
    options.setup?.(session);
    await session.start();
    try {
      return await body(session, opened);
    } finally {
      await session.stop();
    }
  } finally {
    await opened.store.close();
  }
}

/** Connects or throws a CliError saying why the server could not be reached. */
export async function connectOrFail(
  context: CommandContext,
  session: ClientSession,
  opened: OpenProfile,
): Promise<void> {
  const attempt = await firstAttempt(session, FIRST_ATTEMPT_TIMEOUT_MS, context.signal);
  if (attempt.kind === "offline") {
    throw new CliError(`cannot reach the server at ${opened.profile.serverUrl}: ${attempt.reason}`, {
      code: "UNAVAILABLE",
    });
  }
}
