/**
 * Shared set-up for the CLI end-to-end suites: temporary profiles and users
 * registered through the real `remessenger init`.
 */
import { join } from "node:path";
import { type CliUser, runCliJson } from "../../scripts/harness/cli.ts";
import type { OutboxEntry } from "@remessenger/client-core";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import { SqliteClientStore } from "@remessenger/client-core/node";

export { type CliUser, initUser, profileRoot } from "../../scripts/harness/cli.ts";

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
