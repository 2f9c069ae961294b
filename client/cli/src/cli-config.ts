/**
 * The CLI's configuration, parsed once from global flags and REMESSENGER_*
 * environment variables into one typed object. Nothing else in the CLI reads
 * process.env.
 *
 *   --profile DIR      REMESSENGER_PROFILE     default ~/.remessenger
 *   --server URL[,URL] REMESSENGER_SERVER      default: the profile's, else http://127.0.0.1:8080;
 *                                              several nodes: used in turn when one is down
 *   --log-level LEVEL  REMESSENGER_LOG_LEVEL   default silent (diagnostics on stderr)
 *   --json                                     machine-readable output
 *   --transport KIND   REMESSENGER_TRANSPORT   ws | https | doh | dns | auto (default auto)
 *   --resolver H:P     REMESSENGER_RESOLVER    plain-DNS resolver (default: the system's)
 *   --doh-url URL      REMESSENGER_DOH_URL     DoH resolver, repeatable (env: comma-separated;
 *                                              default: the server's own /dns-query)
 *   --name-budget N    REMESSENGER_NAME_BUDGET longest tunnel query name (default 253)
 *                      REMESSENGER_PASSPHRASE  unlocks the profile's key file (else asked on the
 *                                              terminal; unused when the OS keychain holds the key)
 *                      REMESSENGER_KEY_LOG     FILE: append every E2E key pair made (tests and
 *                                              debugging only, like SSLKEYLOGFILE)
 *                      REMESSENGER_GROUP_GRACE_MS, REMESSENGER_GROUP_GRACE_MESSAGES
 *                                              how long after a group's rotation its previous
 *                                              epoch is still accepted (default 1 h and 1,000)
 *                      REMESSENGER_SIGNED_PREKEY_ROTATION_MS, REMESSENGER_SIGNED_PREKEY_GRACE_MS
 *                                              how often the device replaces its signed prekey, and
 *                                              how long it keeps a replaced one (default 7 and 30 days)
 */
import { join } from "node:path";
import {
  splitServerUrls,
  webSocketUrl,
  DEFAULT_GRACE_WINDOW,
  type GraceWindow,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
  type SignedPreKeyPolicy,
} from "@remessenger/client-core";
import { MAX_NAME_CHARS, MIN_NAME_BUDGET } from "@remessenger/protocol";
import { usageError } from "./cli-error.ts";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:8080";
export const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Which pipe to use. "auto" is the transport ladder: every pipe the profile knows, best first. */
export const TRANSPORT_CHOICES = ["ws", "https", "doh", "dns", "auto"] as const;
export type TransportChoice = (typeof TRANSPORT_CHOICES)[number];

export interface CliConfig {
  profileDir: string;
  transport: TransportChoice;
  /** Plain-DNS resolver; undefined: the system resolver. */
  resolver: { host: string; port: number } | undefined;
  /** DoH resolvers; empty: the server's own /dns-query. */
  dohUrls: string[];
  nameBudget: number | undefined;
  /** The server named on the command line or in the environment; undefined means "the profile's". */
  explicitServerUrl: string | undefined;
  isJson: boolean;
  logLevel: LogLevel;
  passphrase: string | undefined;
  keyLogFile: string | undefined;
  /** The grace window after a group's rotation. */
  groupWindow: GraceWindow;
  /** Signed prekey rotation. */
  signedPreKeys: SignedPreKeyPolicy;
}

export interface GlobalFlags {
  profile?: string;
  server?: string;
  json?: boolean;
  logLevel?: string;
  transport?: string;
  resolver?: string;
  dohUrl?: string[];
  nameBudget?: string;
}

export function parseCliConfig(
  flags: GlobalFlags,
  env: Readonly<Record<string, string | undefined>>,
  homeDir: string,
): CliConfig {
  const profileDir = flags.profile ?? nonEmpty(env.REMESSENGER_PROFILE) ?? join(homeDir, ".remessenger");
  const explicitServerUrl = flags.server ?? nonEmpty(env.REMESSENGER_SERVER);
  if (explicitServerUrl !== undefined) checkServerUrl(explicitServerUrl);
  const level = flags.logLevel ?? nonEmpty(env.REMESSENGER_LOG_LEVEL) ?? "silent";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw usageError(`log level must be one of ${LOG_LEVELS.join(", ")}; got ${level}`);
  }
  const transport = flags.transport ?? nonEmpty(env.REMESSENGER_TRANSPORT) ?? "auto";
  if (!(TRANSPORT_CHOICES as readonly string[]).includes(transport)) {
    throw usageError(`--transport must be one of ${TRANSPORT_CHOICES.join(", ")}; got ${transport}`);
  }
  const resolverText = flags.resolver ?? nonEmpty(env.REMESSENGER_RESOLVER);
  const dohUrls =
    flags.dohUrl !== undefined && flags.dohUrl.length > 0
      ? flags.dohUrl
      : (nonEmpty(env.REMESSENGER_DOH_URL)
          ?.split(",")
          .map((url) => url.trim()) ?? []);
  for (const url of dohUrls) checkDohUrl(url);
  const budgetText = flags.nameBudget ?? nonEmpty(env.REMESSENGER_NAME_BUDGET);
  let nameBudget: number | undefined;
  if (budgetText !== undefined) {
    nameBudget = Number(budgetText);
    if (!/^\d+$/.test(budgetText) || nameBudget < MIN_NAME_BUDGET || nameBudget > MAX_NAME_CHARS) {
      throw usageError(`--name-budget must be ${MIN_NAME_BUDGET} to ${MAX_NAME_CHARS}; got ${budgetText}`);
    }
  }
  return {
    profileDir,
    explicitServerUrl,
    isJson: flags.json === true,
    logLevel: level as LogLevel,
    transport: transport as TransportChoice,
    resolver: resolverText === undefined ? undefined : parseResolver(resolverText),
    dohUrls,
    nameBudget,
    passphrase: env.REMESSENGER_PASSPHRASE === "" ? undefined : env.REMESSENGER_PASSPHRASE,
    keyLogFile: nonEmpty(env.REMESSENGER_KEY_LOG),
    groupWindow: {
      ms: count(env.REMESSENGER_GROUP_GRACE_MS, "REMESSENGER_GROUP_GRACE_MS") ?? DEFAULT_GRACE_WINDOW.ms,
      messages:
        count(env.REMESSENGER_GROUP_GRACE_MESSAGES, "REMESSENGER_GROUP_GRACE_MESSAGES") ??
        DEFAULT_GRACE_WINDOW.messages,
    },
    signedPreKeys: {
      rotationMs:
        positive(env.REMESSENGER_SIGNED_PREKEY_ROTATION_MS, "REMESSENGER_SIGNED_PREKEY_ROTATION_MS") ??
        SIGNED_PREKEY_ROTATION_MS,
      graceMs:
        count(env.REMESSENGER_SIGNED_PREKEY_GRACE_MS, "REMESSENGER_SIGNED_PREKEY_GRACE_MS") ?? SIGNED_PREKEY_GRACE_MS,
    },
  };
}

/** A whole number of at least 1 from the environment, if set. */
function positive(text: string | undefined, name: string): number | undefined {
  const value = count(text, name);
  if (value === 0) throw usageError(`${name} must be at least 1`);
  return value;
}

/** A whole number of at least 0 from the environment, if set. */
function count(text: string | undefined, name: string): number | undefined {
  const value = nonEmpty(text);
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value)) throw usageError(`${name} must be a whole number; got ${value}`);
  return Number(value);
}

/** HOST:PORT or [IPv6]:PORT; a bare host means port 53. */
export function parseResolver(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? 53 : Number(match[3]);
  if (host === undefined || port < 1 || port > 65535) {
    throw usageError(`--resolver must be HOST[:PORT] (e.g. 127.0.0.1:53 or [::1]:53); got ${text}`);
  }
  return { host, port };
}

function checkDohUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usageError(`--doh-url must be a URL; got ${url}`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw usageError(`--doh-url must be https:// (http:// only for local tests); got ${url}`);
  }
}

/** One URL, or several nodes of one deployment separated by commas (the client fails over between them). */
function checkServerUrl(urls: string): void {
  const list = splitServerUrls(urls);
  if (list.length === 0) throw usageError("--server needs a URL");
  for (const url of list) {
    try {
      webSocketUrl(url);
    } catch (error) {
      throw usageError(error instanceof Error ? error.message : `bad server URL: ${url}`);
    }
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}
