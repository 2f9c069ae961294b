/**
 * `remessenger verify USER_ID [--accept]`: the safety number of this user and
 * USER_ID (60 digits, and a QR-friendly string), computed from both users'
 * device identity keys, and whether any of USER_ID's device keys changed
 * since they were first seen. Compare the number with the other person over
 * another channel. A changed key blocks sending to the user until
 * `verify USER_ID --accept` (run after comparing) trusts the keys shown.
 *
 * Exit 0 when the keys are trusted (or were just accepted), 1 when a change
 * waits for acceptance.
 */
import { bytesToHex } from "@noble/hashes/utils.js";
import { isId, type KnownUser, safetyNumber, sha256 } from "@remessenger/client-core";
import { CliError, EXIT_FAILURE, usageError } from "../cli-error.ts";
import { type CommandContext, connectOrFail, withSession } from "../cli-session.ts";

/** A short, stable name for a key: 16 hex digits of its SHA-256. */
function fingerprint(key: Uint8Array): string {
  return bytesToHex(sha256(key).subarray(0, 8)).replace(/(.{4})(?=.)/g, "$1 ");
}

export async function verifyCommand(
  context: CommandContext,
  userId: string,
  options: { accept: boolean },
): Promise<void> {
  if (!isId("user", userId)) throw usageError(`not a user id: ${userId}`);
  await withSession(context, { subscribe: false, sendOutbox: false }, async (session, opened) => {
    await connectOrFail(context, session, opened);
    let them: KnownUser | undefined = await session.knownUser(userId, true);
    const me = await session.knownUser(opened.profile.userId, true);
    if (them === undefined || me === undefined) throw new CliError(`cannot fetch the devices of ${userId}`);
    const wasChanged = them.devices.some((d) => d.trust === "changed");
    if (options.accept) {
      const accepted = them;
      them = await session.acceptIdentity(accepted.userId);
    }
    const number = safetyNumber(
      { userId: me.userId, identityKeys: me.devices.map((d) => d.identityKey) },
      { userId, identityKeys: them.devices.map((d) => d.identityKey) },
    );
    const isChanged = them.devices.some((d) => d.trust === "changed");
    const status = isChanged ? "changed" : options.accept && wasChanged ? "accepted" : "trusted";
    const devices = them.devices.map((d) => ({
      deviceId: d.deviceId,
      fingerprint: fingerprint(d.identityKey),
      trust: d.trust,
      previousFingerprint: d.previousKey === undefined ? undefined : fingerprint(d.previousKey),
    }));
    const lines = [
      `safety number with ${userId}:`,
      `  ${number.digits}`,
      `  QR: ${number.qr}`,
      ...devices.map(
        (d) =>
          `  device ${d.deviceId}: ${d.fingerprint} ${d.trust}${d.previousFingerprint === undefined ? "" : ` (was ${d.previousFingerprint})`}`,
      ),
      isChanged
        ? `the identity of ${userId} CHANGED: sending is blocked; compare the number, then run: remessenger verify ${userId} --accept`
        : `status: ${status}`,
    ];
    context.output.print(
      { userId, safetyNumber: number.digits, qr: number.qr, status, isVerified: them.isVerified, devices },
      lines.join("\n"),
    );
    if (isChanged)
      throw new CliError(`the identity of ${userId} changed and is not accepted`, {
        exitCode: EXIT_FAILURE,
        code: "IDENTITY_CHANGED",
      });
  });
}
