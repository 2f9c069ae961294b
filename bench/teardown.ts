/**
 * Every process a benchmark starts registers how to stop it here, so Ctrl-C,
 * SIGTERM or a crash in the middle of a run leaves nothing behind: run.ts calls
 * stopAll() before it exits, and a last synchronous SIGKILL covers an exit that
 * skipped it. Benchmarks still stop what they started in their own `finally`;
 * this is the net under them.
 */

interface Entry {
  what: string;
  stop(): Promise<void>;
  /** Synchronous last resort on process exit (SIGKILL the pid). */
  kill(): void;
}

const entries = new Set<Entry>();
let isExitHookInstalled = false;

/** Registers a started process; returns the function that unregisters it. */
export function track(what: string, stop: () => Promise<void>, kill: () => void): () => void {
  if (!isExitHookInstalled) {
    isExitHookInstalled = true;
    process.once("exit", () => {
      for (const entry of entries) entry.kill();
    });
  }
  const entry: Entry = { what, stop, kill };
  entries.add(entry);
  return () => {
    entries.delete(entry);
  };
}

/** Stops everything still registered; reports failures through `log`. */
export async function stopAll(log: (line: string) => void): Promise<void> {
  const pending = [...entries];
  entries.clear();
  await Promise.all(
    pending.map(async (entry) => {
      try {
        await entry.stop();
      } catch (error) {
        log(`could not stop ${entry.what}: ${String(error)}; killing it`);
        entry.kill();
      }
    }),
  );
}

/** SIGKILLs a pid if it is still there (one that already exited is fine). */
export function killPid(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}
