/**
 * Test harness: runs the real `remessenger` CLI (client/cli/bin/remessenger.js)
 * as a child process, as a user or a script would, for the end-to-end suites.
 *
 * - `runCli(profile, args)` runs one command to completion: { stdout, stderr, code }.
 * - `runCliJson(profile, args)` adds --json, insists on exit 0, and parses stdout.
 * - `startCli(profile, args)` starts a long-running command (`listen --json`)
 *   and yields its stdout JSON lines as they come: `next(predicate)` waits for
 *   a matching line, and the process is also an async iterable of lines.
 *
 * Every wait has a timeout and reports what the process printed when it fails.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { type ProcessResult, collectUntilExit } from "./process.ts";

export const CLI_BIN = resolve(import.meta.dirname, "../../client/cli/bin/remessenger.js");
const DEFAULT_TIMEOUT_MS = 30_000;

export type CliResult = ProcessResult;

export interface CliOptions {
  /** Kill the process (SIGKILL) and fail if it runs longer (default 30 s). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Written to the process's stdin, which is then closed (default: no stdin). */
  input?: string;
}

/** The passphrase the harness's CLI profiles are protected with (REMESSENGER_PASSPHRASE). */
export const TEST_PASSPHRASE = "correct horse battery staple";

function spawnCli(profile: string, args: readonly string[], options: CliOptions): ChildProcess {
  const child = spawn(process.execPath, [CLI_BIN, "--profile", profile, ...args], {
    stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    env: { REMESSENGER_PASSPHRASE: TEST_PASSPHRASE, ...process.env, ...options.env },
  });
  if (options.input !== undefined) child.stdin?.end(options.input);
  return child;
}

/** Runs one CLI command to completion. */
export function runCli(profile: string, args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return collectUntilExit(spawnCli(profile, args, options), `remessenger ${args.join(" ")}`, options.timeoutMs);
}

/** Runs a command with --json; fails unless it exits 0; returns the last stdout line parsed. */
export async function runCliJson<T = Record<string, unknown>>(
  profile: string,
  args: readonly string[],
  options: CliOptions = {},
): Promise<T> {
  const result = await runCli(profile, ["--json", ...args], options);
  if (result.code !== 0) {
    throw new Error(
      `remessenger ${args.join(" ")} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
    );
  }
  const lines = result.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] ?? "null") as T;
}

export type JsonLine = Record<string, unknown>;

export interface CliProcess extends AsyncIterable<JsonLine> {
  readonly child: ChildProcess;
  /** Every stdout line so far, parsed (non-JSON lines as { raw }). */
  readonly lines: readonly JsonLine[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /**
   * Resolves with the first line after the previously consumed one that
   * matches; lines before it are consumed too.
   */
  next(predicate?: (line: JsonLine) => boolean, timeoutMs?: number): Promise<JsonLine>;
  /** Resolves once stderr (all of it so far) matches `pattern`. */
  stderrMatches(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves when the process exits. */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (graceful) and wait for exit. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL and wait for exit: a crash. */
  kill(): Promise<void>;
}

/** Starts a long-running CLI command (e.g. `listen --json`). */
export function startCli(profile: string, args: readonly string[], options: CliOptions = {}): CliProcess {
  const child = spawnCli(profile, args, options);
  const lines: JsonLine[] = [];
  let consumed = 0;
  let stderr = "";
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const wakeups = new Set<() => void>();
  const wakeAll = (): void => {
    for (const wake of [...wakeups]) wake();
  };

  createInterface({ input: child.stdout ?? process.stdin }).on("line", (text) => {
    let line: JsonLine;
    try {
      const parsed: unknown = JSON.parse(text);
      line = typeof parsed === "object" && parsed !== null ? (parsed as JsonLine) : { raw: text };
    } catch {
      line = { raw: text };
    }
    lines.push(line);
    wakeAll();
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
    wakeAll();
  });
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) => {
    child.once("close", (code, signal) => {
      exit = { code, signal };
      resolvePromise(exit);
      wakeAll();
    });
  });

  const describe = (): string =>
    `remessenger ${args.join(" ")}\nstdout lines: ${lines.map((l) => JSON.stringify(l)).join("\n")}\nstderr: ${stderr}`;

  const waitFor = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolvePromise, reject) => {
      const attempt = (): void => {
        const value = check();
        if (value !== undefined) {
          done();
          resolvePromise(value);
        } else if (exit !== undefined && what !== "exit") {
          done();
          reject(new Error(`process exited (${exit.code ?? exit.signal}) while waiting for ${what}\n${describe()}`));
        }
      };
      const done = (): void => {
        clearTimeout(timer);
        wakeups.delete(attempt);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${describe()}`));
      }, timeoutMs);
      wakeups.add(attempt);
      attempt();
    });

  const cli: CliProcess = {
    child,
    lines,
    stderr: () => stderr,
    next: (predicate = () => true, timeoutMs = DEFAULT_TIMEOUT_MS) =>
      waitFor(
        () => {
          while (consumed < lines.length) {
            const line = lines[consumed++];
            if (line !== undefined && predicate(line)) return line;
          }
          return undefined;
        },
        timeoutMs,
        "a matching line",
      ),
    stderrMatches: async (pattern, timeoutMs = DEFAULT_TIMEOUT_MS) => {
      await waitFor(() => (pattern.test(stderr) ? true : undefined), timeoutMs, `stderr matching ${String(pattern)}`);
    },
    exited: (timeoutMs = DEFAULT_TIMEOUT_MS) => waitFor(() => exit, timeoutMs, "exit"),
    stop: async (timeoutMs = DEFAULT_TIMEOUT_MS) => {
      if (exit === undefined) child.kill("SIGTERM");
      return cli.exited(timeoutMs);
    },
    kill: async () => {
      if (exit === undefined) child.kill("SIGKILL");
      await exitPromise;
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (consumed >= lines.length && exit !== undefined) return;
        try {
          yield await cli.next(() => true);
        } catch (error) {
          if (exit !== undefined && consumed >= lines.length) return;
          throw error;
        }
      }
    },
  };
  return cli;
}

export interface CliUser {
  profile: string;
  userId: string;
  deviceId: string;
}

/** A temporary directory holding test profiles; `dispose` removes it. */
export function profileRoot(): { dir: string; profile(name: string): string; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-cli-"));
  return {
    dir,
    profile: (name) => join(dir, name),
    dispose: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function initUser(profile: string, serverUrl: string, name: string): Promise<CliUser> {
  const ids = await runCliJson<{ userId: string; deviceId: string }>(profile, [
    "--server",
    serverUrl,
    "init",
    "--name",
    name,
  ]);
  return { profile, ...ids };
}
