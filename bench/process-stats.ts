/**
 * What a benchmark learns about a server process from Linux's /proc: its peak
 * resident memory (VmHWM, the high-water mark the kernel keeps, so no sampling
 * can miss a peak) and the CPU time it used (user + system, all threads), which
 * tells whether a figure was bound by the server or by the load generator, and
 * how busy the rest of the machine was meanwhile (a shared machine skews figures).
 */
import { readFileSync } from "node:fs";

/** Linux reports CPU times in clock ticks; USER_HZ is 100 on every mainstream build. */
const CLOCK_TICKS_PER_SECOND = 100;

/** VmHWM of the process in bytes: its peak resident set since it started. */
export function peakRssBytes(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readProc(pid, "status"));
  if (match?.[1] === undefined) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** User + system CPU seconds the process used so far, all its threads. */
export function cpuSeconds(pid: number): number {
  const stat = readProc(pid, "stat");
  // The command name (field 2) may hold spaces; the fields after it are plain.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  return (userTicks + systemTicks) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds the whole machine spent busy (all processes, all cores) since boot. */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal ...
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = [user, nice, system, irq, softirq, steal].reduce<number>((sum, ticks) => sum + (ticks ?? 0), 0);
  return busy / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds of this (the load generator's) process, all threads. */
export function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch (error) {
    if (isGone(error)) throw new Error(`process ${pid} is gone (it exited during the run)`, { cause: error });
    throw error;
  }
}

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ESRCH";
}
