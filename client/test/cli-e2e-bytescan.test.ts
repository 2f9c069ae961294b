/**
 * End-to-end encryption as the server sees it: two CLI users exchange 1,000
 * messages through real server processes (embedded store and Redis), with a
 * DH ratchet turn at every change of speaker; then every byte the server
 * keeps — the SQLite file with its WAL and shared memory, a Redis RDB dump
 * (uncompressed) and every Redis value — is scanned for every plaintext,
 * every private key (identity, prekeys, ratchet and setup keys, the storage
 * key) and every ratchet public key. None may appear.
 *
 * The clients log each key pair they make to REMESSENGER_KEY_LOG (the test
 * hook, like SSLKEYLOGFILE); their identity secrets come from their key files,
 * opened with the passphrase.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { TEST_PASSPHRASE, startCli, runCli } from "../../scripts/harness/cli.ts";
import { readKeyFile } from "@remessenger/client-core/node";
import { startServer } from "../../scripts/harness/server.ts";
import { type CliUser, createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

const STORE_KINDS = ["embedded", "redis"] as const;
const ROUNDS = 10;
const PER_TURN = 50; // 10 rounds x 2 turns x 50 = 1,000 messages

const profiles = profileRoot();

afterAll(() => {
  profiles.dispose();
});

interface Secret {
  what: string;
  bytes: Buffer;
}

function keyLogSecrets(file: string): Secret[] {
  if (!existsSync(file)) return [];
  const secrets: Secret[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [kind, publicHex, privateHex] = line.split(" ");
    if (kind === undefined || publicHex === undefined || privateHex === undefined) continue;
    secrets.push({ what: `${kind} private key`, bytes: Buffer.from(privateHex, "hex") });
    if (kind === "ratchet") secrets.push({ what: "ratchet public key", bytes: Buffer.from(publicHex, "hex") });
  }
  return secrets;
}

function findings(haystack: Buffer, secrets: readonly Secret[]): string[] {
  return secrets
    .filter((s) => haystack.includes(s.bytes))
    .map((s) => `${s.what} ${s.bytes.subarray(0, 8).toString("hex")}…`);
}

async function sendLines(user: CliUser, chatId: string, texts: readonly string[], keyLog: string): Promise<void> {
  const result = await runCli(user.profile, ["--json", "send", chatId, "--stdin", "--timeout", "60000"], {
    input: `${texts.join("\n")}\n`,
    env: { REMESSENGER_KEY_LOG: keyLog },
    timeoutMs: 90_000,
  });
  expect(result.code, result.stderr).toBe(0);
}

async function receive(user: CliUser, count: number, keyLog: string): Promise<string[]> {
  const listen = startCli(user.profile, ["--json", "listen", "--exit-after", String(count)], {
    env: { REMESSENGER_KEY_LOG: keyLog },
    timeoutMs: 90_000,
  });
  const exit = await listen.exited(90_000);
  expect(exit.code, listen.stderr()).toBe(0);
  return listen.lines.filter((l) => l.type === "message").map((l) => String(l.text));
}

describe.each(STORE_KINDS)("E2E byte scan of the server's store after 1,000 messages (%s)", (kind) => {
  it("finds no plaintext, no private key and no ratchet public key anywhere the server keeps data", async () => {
    const server = await startServer(kind === "redis" ? { store: "redis" } : {});
    try {
      const url = server.url;
      const aliceLog = join(profiles.dir, `${kind}-alice.keys`);
      const bobLog = join(profiles.dir, `${kind}-bob.keys`);
      const alice = await initUser(profiles.profile(`${kind}-alice`), url, "Alice");
      const bob = await initUser(profiles.profile(`${kind}-bob`), url, "Bob");
      const chatId = await createDirectChat(alice, bob);
      const plaintexts: string[] = [];
      for (let round = 0; round < ROUNDS; round += 1) {
        for (const [from, to, fromLog, toLog] of [
          [alice, bob, aliceLog, bobLog],
          [bob, alice, bobLog, aliceLog],
        ] as const) {
          const texts = Array.from(
            { length: PER_TURN },
            (_, i) => `${from === alice ? "alice" : "bob"} r${round} m${i} ${randomBytes(12).toString("hex")}`,
          );
          plaintexts.push(...texts);
          await sendLines(from, chatId, texts, fromLog);
          // The receiver reads them all, in order, before it answers: a DH ratchet turn per round and side.
          expect(await receive(to, PER_TURN, toLog)).toEqual(texts);
        }
      }
      expect(plaintexts).toHaveLength(1000);

      const secrets: Secret[] = [
        ...plaintexts.map((text) => ({ what: `plaintext "${text}"`, bytes: Buffer.from(text) })),
        ...keyLogSecrets(aliceLog),
        ...keyLogSecrets(bobLog),
      ];
      for (const user of [alice, bob]) {
        const keys = await readKeyFile(user.profile, {
          kind: "passphrase",
          passphrase: () => Promise.resolve(TEST_PASSPHRASE),
        });
        secrets.push(
          { what: "Ed25519 identity seed", bytes: Buffer.from(keys.ed25519Seed) },
          { what: "X25519 identity private key", bytes: Buffer.from(keys.x25519PrivateKey) },
          { what: "storage key", bytes: Buffer.from(keys.storageKey) },
        );
      }
      const ratchetKeys = secrets.filter((s) => s.what === "ratchet public key").length;
      // Every turn made new ratchet keys on both sides.
      expect(ratchetKeys).toBeGreaterThanOrEqual(2 * ROUNDS);
      // The scan can see what it looks for: the plaintexts are in the clients' own stores.
      const clientBytes = readFileSync(join(bob.profile, "client.sqlite"));
      const walFile = join(bob.profile, "client.sqlite-wal");
      const clientAll = Buffer.concat([clientBytes, existsSync(walFile) ? readFileSync(walFile) : Buffer.alloc(0)]);
      expect(findings(clientAll, secrets.slice(0, 5)).length).toBeGreaterThan(0);

      const scanned: Array<[string, Buffer]> = [];
      if (kind === "embedded") {
        const dir = server.dataDir;
        for (const file of readdirSync(dir)) scanned.push([file, readFileSync(join(dir, file))]);
        expect(scanned.map(([file]) => file)).toContain("remessenger.sqlite-wal");
      } else {
        const redisUrl = server.redisUrl;
        if (redisUrl === undefined) throw new Error("no redis url");
        const redis = new Redis(redisUrl);
        try {
          await redis.config("SET", "rdbcompression", "no");
          await redis.save();
          const [, dir] = (await redis.config("GET", "dir")) as [string, string];
          const [, file] = (await redis.config("GET", "dbfilename")) as [string, string];
          scanned.push(["dump.rdb", readFileSync(join(dir, file))]);
          const values: Buffer[] = [];
          for (const key of await redis.keys("*")) {
            const type = await redis.type(key);
            values.push(Buffer.from(key));
            if (type === "string") values.push((await redis.getBuffer(key)) ?? Buffer.alloc(0));
            else if (type === "hash") values.push(...Object.values(await redis.hgetallBuffer(key)));
            else if (type === "zset") values.push(...(await redis.zrangeBuffer(key, "0", "-1")));
            else if (type === "set") values.push(...(await redis.smembersBuffer(key)));
            else if (type === "list") values.push(...(await redis.lrangeBuffer(key, 0, -1)));
          }
          scanned.push(["every Redis value", Buffer.concat(values)]);
        } finally {
          redis.disconnect();
        }
      }
      for (const [name, bytes] of scanned) expect(findings(bytes, secrets), `found in ${name}`).toEqual([]);
    } finally {
      await server.cleanup();
    }
  }, 600_000);
});
