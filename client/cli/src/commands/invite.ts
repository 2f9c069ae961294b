/**
 * `remessenger invite`: prints an invite string — the server URL, its DNS
 * tunnel zone and gateway key — for someone who can only reach DNS:
 * `remessenger init --name NAME --invite STRING` then works over
 * `--transport doh` or `--transport dns`.
 */
import { decodeTunnelKey, encodeInvite } from "@remessenger/client-core";
import { usageError } from "../cli-error.ts";
import type { CommandContext } from "../cli-session.ts";
import { openProfile } from "../profile.ts";

export async function inviteCommand(context: CommandContext): Promise<void> {
  const opened = await openProfile(context.config.profileDir, context.config);
  try {
    const { profile } = opened;
    if (profile.tunnel === undefined) {
      throw usageError(
        `the server ${profile.serverUrl} announced no DNS tunnel to this profile; there is nothing to invite to`,
      );
    }
    const invite = encodeInvite({
      serverUrl: profile.serverUrl,
      zone: profile.tunnel.zone,
      publicKey: decodeTunnelKey(profile.tunnel.publicKey),
    });
    context.output.print({ invite, server: profile.serverUrl, zone: profile.tunnel.zone }, invite);
  } finally {
    await opened.store.close();
  }
}
