/**
 * Shared set-up for the CLI end-to-end suites: temporary profiles and users
 * registered through the real `remessenger init`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCliJson } from "../../scripts/harness/cli.ts";
import type { OutboxEntry } from "../core/src/outbox/client-store.ts";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import { SqliteClientStore } from "../cli/src/sqlite-client-store.ts";

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

/** Links a new device (profile) to `owner`'s user as a user would: request, approval by `owner`, finish. */
export async function linkDevice(serverUrl: string, owner: CliUser, profile: string, name: string): Promise<CliUser> {
  const { linkCode } = await runCliJson<{ linkCode: string }>(profile, ["--server", serverUrl, "link", "request"]);
  const { approval } = await runCliJson<{ approval: string }>(owner.profile, ["link", "approve", linkCode]);
  const linked = await runCliJson<{ userId: string; deviceId: string }>(profile, [
    "link",
    "finish",
    approval,
    "--name",
    name,
  ]);
  if (linked.userId !== owner.userId) throw new Error(`linked to ${linked.userId}, not ${owner.userId}`);
  return { profile, ...linked };
}

export async function createDirectChat(from: CliUser, to: CliUser): Promise<string> {
  const { chatId } = await runCliJson<{ chatId: string }>(from.profile, ["chat", "create", "--with", to.userId]);
  return chatId;
}

export interface SendResult {
  chatId: string;
  messageId: string;
  state: string;
  seq?: number;
  reason?: string;
}

/** Reads a profile's outbox the way a second process would. */
export async function outboxOf(profile: string): Promise<OutboxEntry[]> {
  const store = SqliteClientStore.open(join(profile, DATABASE_FILE));
  try {
    return await store.listOutbox({ limit: 100 });
  } finally {
    await store.close();
  }
}
