/**
 * Test harness: runs a program to completion as a child process and collects
 * what it printed: { stdout, stderr, code, signal }. The wait has a timeout
 * (SIGKILL, then a failure that shows the output so far).
 */
import { type ChildProcess, spawn } from "node:child_process";

const DEFAULT_TIMEOUT_MS = 30_000;

export interface ProcessResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Waits for `child` to exit, collecting its output; kills it after `timeoutMs`. */
export function collectUntilExit(
  child: ChildProcess,
  what: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<ProcessResult> {
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${what} ran over ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ stdout, stderr, code, signal });
    });
  });
}

/** Runs `command args` to completion (no stdin). */
export function runToExit(
  command: string,
  args: readonly string[],
  options: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<ProcessResult> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
  return collectUntilExit(child, `${command} ${args.join(" ")}`, options.timeoutMs);
}
