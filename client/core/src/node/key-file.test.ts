import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { hasKeyFile, IDENTITY_FILE, type KekSource, KeyFileError, readKeyFile, writeKeyFile } from "./key-file.ts";

const secrets = {
  ed25519Seed: new Uint8Array(32).fill(1),
  x25519PrivateKey: new Uint8Array(32).fill(2),
  storageKey: new Uint8Array(32).fill(3),
};
const passphrase = (value: string): KekSource => ({ kind: "passphrase", passphrase: () => Promise.resolve(value) });

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-keys-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("key file", () => {
  it("keeps the device secrets under a passphrase, owner-only, never in the clear", async () => {
    const dir = freshDir();
    expect(hasKeyFile(dir)).toBe(false);
    await writeKeyFile(dir, secrets, passphrase("correct horse"));
    expect(hasKeyFile(dir)).toBe(true);
    const path = join(dir, IDENTITY_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const body = readFileSync(path, "utf8");
    expect(JSON.parse(body)).toMatchObject({ format: "remessenger-keys-v2", kek: "scrypt" });
    expect(body).not.toContain("AQEBAQEB");
    expect(await readKeyFile(dir, passphrase("correct horse"))).toEqual(secrets);
  });

  it("says plainly what the user can fix: a wrong or empty passphrase, a file that is not a key file", async () => {
    const dir = freshDir();
    await expect(writeKeyFile(dir, secrets, passphrase(""))).rejects.toThrow(
      new KeyFileError("the passphrase is empty"),
    );
    await writeKeyFile(dir, secrets, passphrase("correct horse"));
    await expect(readKeyFile(dir, passphrase("wrong"))).rejects.toThrow(/wrong passphrase/);
    await expect(readKeyFile(dir, { kind: "keychain" })).rejects.toThrow(/protected by a passphrase/);
    writeFileSync(join(dir, IDENTITY_FILE), "{}");
    await expect(readKeyFile(dir, passphrase("correct horse"))).rejects.toBeInstanceOf(KeyFileError);
  });
});
