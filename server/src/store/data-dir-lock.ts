/**
 * One server per embedded data directory: a lock file (`server.lock`, the
 * owner's pid and host as JSON) taken before the store opens and removed at
 * shutdown. The embedded store's group commit assumes it is the only writer;
 * a second server on the same directory would interleave its writes and
 * sequence numbers with the first one's.
 *
 * - A lock whose process is gone (a crash, SIGKILL, a power cut) is stale and
 *   taken over: a crashed server never leaves the directory stuck.
 * - The file is written whole under a temporary name and hard-linked into
 *   place, which fails when a lock exists: two servers starting together
 *   cannot both win, and nobody reads a half-written lock.
 * - A lock from another host (a directory on a network filesystem) cannot be
 *   checked from here and is refused, with the file to delete named.
 * Limits: a pid reused by an unrelated process after a crash reads as alive
 * (the message names the pid and the file); two servers taking over the same
 * stale lock in the same instant can race, each removing the other's.
 */
import { linkSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

export const LOCK_FILE_NAME = "server.lock";

/** What the lock file holds. */
interface LockOwner {
  pid: number;
  host: string;
}

export interface DataDirLockOptions {
  pid?: number;
  host?: string;
  /** Whether a process of this host runs; injected by tests. */
  isAlive?: (pid: number) => boolean;
}

/** The data directory is held by another live server. */
export class DataDirInUseError extends RemessengerError {
  override readonly name = "DataDirInUseError";
  constructor(message: string) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, message);
  }
}

export class DataDirLock {
  private readonly path: string;
  private readonly owner: LockOwner;

  private constructor(path: string, owner: LockOwner) {
    this.path = path;
    this.owner = owner;
  }

  /** Takes the directory's lock, taking over a stale one; throws DataDirInUseError when a live server holds it. */
  static acquire(dataDir: string, options: DataDirLockOptions = {}): DataDirLock {
    const owner: LockOwner = { pid: options.pid ?? process.pid, host: options.host ?? hostname() };
    const isAlive = options.isAlive ?? isProcessAlive;
    const path = join(dataDir, LOCK_FILE_NAME);
    const staging = `${path}.${owner.pid}.tmp`;
    writeFileSync(staging, JSON.stringify(owner));
    try {
      // Twice at most: the second try follows the removal of a stale lock.
      for (let attempt = 0; attempt < 2; attempt += 1) {
        try {
          linkSync(staging, path);
          return new DataDirLock(path, owner);
        } catch (error) {
          if (!isCode(error, "EEXIST")) throw error;
        }
        const holder = readOwner(path);
        if (holder === undefined) continue; // removed meanwhile: try again
        if (holder.host !== owner.host) {
          throw new DataDirInUseError(
            `data directory ${dataDir} is locked by a server on host ${holder.host} (pid ${holder.pid}); ` +
              `if none runs there, delete ${path}`,
          );
        }
        if (holder.pid !== owner.pid && isAlive(holder.pid)) {
          throw new DataDirInUseError(
            `data directory ${dataDir} is in use by another server (pid ${holder.pid}); ` +
              `stop it, or give this one its own directory with --data DIR`,
          );
        }
        rmSync(path, { force: true });
      }
      throw new DataDirInUseError(`data directory ${dataDir}: could not take ${path} (another server is starting?)`);
    } finally {
      rmSync(staging, { force: true });
    }
  }

  /** Removes the lock if it is still this server's (a takeover after a hang may have replaced it). */
  release(): void {
    const holder = readOwner(this.path);
    if (holder?.pid === this.owner.pid && holder.host === this.owner.host) {
      try {
        unlinkSync(this.path);
      } catch (error) {
        if (!isCode(error, "ENOENT")) throw error;
      }
    }
  }
}

/** The lock's owner, or undefined when there is no lock file. */
function readOwner(path: string): LockOwner | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (isCode(error, "ENOENT")) return undefined;
    throw error;
  }
  let parsed: Partial<LockOwner> = {};
  try {
    parsed = JSON.parse(text) as Partial<LockOwner>;
  } catch {
    // Not JSON: handled as any lock of unknown shape, below.
  }
  if (typeof parsed.pid !== "number" || typeof parsed.host !== "string") {
    throw new DataDirInUseError(`${path} is not a lock this server wrote; delete it if no server uses the directory`);
  }
  return { pid: parsed.pid, host: parsed.host };
}

/** Signal 0 checks that a process exists without touching it; EPERM means it exists under another user. */
function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isCode(error, "EPERM");
  }
}

function isCode(error: unknown, code: string): boolean {
  return error instanceof Error && "code" in error && error.code === code;
}
