/**
 * The data directory lock: a live holder is refused, a dead one (a crash) is
 * taken over, a holder on another host is refused, and release removes only
 * the lock this server holds.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DataDirInUseError, DataDirLock, LOCK_FILE_NAME } from "./data-dir-lock.ts";

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-lock-"));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("DataDirLock", () => {
  it("refuses a second server while the first one lives, naming its pid and the flag", () => {
    const dir = freshDir();
    DataDirLock.acquire(dir, { pid: 100, host: "h", isAlive: () => true });
    expect(() => DataDirLock.acquire(dir, { pid: 200, host: "h", isAlive: () => true })).toThrow(
      expect.toSatisfy((error) => error instanceof DataDirInUseError && /pid 100.*--data DIR/.test(error.message)),
    );
  });

  it("takes over the lock of a server that crashed", () => {
    const dir = freshDir();
    DataDirLock.acquire(dir, { pid: 100, host: "h" }); // never released: the process died
    const lock = DataDirLock.acquire(dir, { pid: 200, host: "h", isAlive: (pid) => pid !== 100 });
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE_NAME), "utf8"))).toEqual({ pid: 200, host: "h" });
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE_NAME))).toBe(false);
  });

  it("refuses a lock from another host, which it cannot check, and names the file", () => {
    const dir = freshDir();
    DataDirLock.acquire(dir, { pid: 100, host: "elsewhere" });
    expect(() => DataDirLock.acquire(dir, { pid: 200, host: "here", isAlive: () => false })).toThrow(
      /host elsewhere.*server\.lock/,
    );
  });

  it("refuses a lock file it did not write rather than guess", () => {
    const dir = freshDir();
    writeFileSync(join(dir, LOCK_FILE_NAME), "not json");
    expect(() => DataDirLock.acquire(dir, { pid: 200, host: "h", isAlive: () => false })).toThrow(DataDirInUseError);
  });

  it("releases only its own lock", () => {
    const dir = freshDir();
    const first = DataDirLock.acquire(dir, { pid: 100, host: "h" });
    // Taken over meanwhile (this server hung and was presumed dead).
    DataDirLock.acquire(dir, { pid: 200, host: "h", isAlive: () => false });
    first.release();
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE_NAME), "utf8"))).toEqual({ pid: 200, host: "h" });
  });
});
