import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ProfileSecretsError, generateDeviceSecrets, nobleEd25519, stablelibX25519 } from "@remessenger/client-core";
import { CliError } from "./cli-error.ts";
import { configureKeyVault, endpointOverrides, keyFileKeeper, keyProblem } from "./profile.ts";
import { KeyFileError } from "@remessenger/client-core/node";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  configureKeyVault({ passphrase: undefined, keyLogFile: undefined });
});

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "cli-profile-test-"));
  dirs.push(dir);
  return dir;
}

describe("endpoints named on the command line", () => {
  it("are what the core's overrides get: an explicit --server only, and --doh-url and --resolver as given", () => {
    expect(endpointOverrides({ explicitServerUrl: undefined, dohUrls: [], resolver: undefined })).toEqual({
      serverUrl: undefined,
      dohUrls: [],
      resolver: undefined,
    });
    expect(
      endpointOverrides({
        explicitServerUrl: "http://b:8080",
        dohUrls: ["https://r/dns-query"],
        resolver: { host: "10.0.0.1", port: 53 },
      }),
    ).toEqual({
      serverUrl: "http://b:8080",
      dohUrls: ["https://r/dns-query"],
      resolver: { host: "10.0.0.1", port: 53 },
    });
  });
});

describe("the key file as the core's keeper of the device secrets", () => {
  it("has nothing before a write, keeps what it wrote, and opens it in a later command with the passphrase", async () => {
    configureKeyVault({ passphrase: "correct horse", keyLogFile: undefined });
    const dir = freshDir();
    const keeper = keyFileKeeper(dir);
    expect(await keeper.has()).toBe(false);
    expect(await keeper.read()).toBeUndefined();
    const secrets = await generateDeviceSecrets({ ed25519: nobleEd25519, x25519: stablelibX25519 });
    await keeper.write(secrets);
    const later = keyFileKeeper(dir);
    expect(await later.has()).toBe(true);
    expect(await later.read()).toEqual(secrets);

    configureKeyVault({ passphrase: "wrong", keyLogFile: undefined });
    await expect(keyFileKeeper(dir).read()).rejects.toBeInstanceOf(KeyFileError);
  });

  it("turns the core's refusal into the key file's own words, so the user reads what to fix", () => {
    const refusal = new KeyFileError("wrong passphrase for /p/identity.key");
    expect(keyProblem(new ProfileSecretsError("unreadable", "keys do not open", { cause: refusal }), "/p")).toBe(
      refusal,
    );
    const missing = keyProblem(new ProfileSecretsError("missing", "gone"), "/p");
    expect(missing).toBeInstanceOf(CliError);
    expect(missing).toMatchObject({ message: "no key file in /p", exitCode: 2 });
    const other = new Error("not about keys");
    expect(keyProblem(other, "/p")).toBe(other);
  });
});
