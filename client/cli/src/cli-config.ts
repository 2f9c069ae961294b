/**
 * The CLI's configuration, parsed once from global flags and REMESSENGER_*
 * environment variables into one typed object. Nothing else in the CLI reads
 * process.env.
 *
 *   --profile DIR      REMESSENGER_PROFILE     default ~/.remessenger
 *   --server URL       REMESSENGER_SERVER      default: the profile's, else http://127.0.0.1:8080
 *   --log-level LEVEL  REMESSENGER_LOG_LEVEL   default silent (diagnostics on stderr)
 *   --json                                     machine-readable output
 */
import { join } from "node:path";
import { webSocketUrl } from "../../core/src/index.ts";
import { usageError } from "./cli-error.ts";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:8080";
export const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface CliConfig {
  profileDir: string;
  /** The server named on the command line or in the environment; undefined means "the profile's". */
  explicitServerUrl: string | undefined;
  isJson: boolean;
  logLevel: LogLevel;
}

export interface GlobalFlags {
  profile?: string;
  server?: string;
  json?: boolean;
  logLevel?: string;
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
  return { profileDir, explicitServerUrl, isJson: flags.json === true, logLevel: level as LogLevel };
}

function checkServerUrl(url: string): void {
  try {
    webSocketUrl(url);
  } catch (error) {
    throw usageError(error instanceof Error ? error.message : `bad server URL: ${url}`);
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}
