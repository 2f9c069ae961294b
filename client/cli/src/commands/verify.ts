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
import { isId, UnknownUserError } from "@remessenger/client-core";
import { CliError, EXIT_FAILURE, usageError } from "../cli-error.ts";
import { type CommandContext, connectOrFail, withMessenger } from "../cli-session.ts";

export async function verifyCommand(
  context: CommandContext,
  userId: string,
  options: { accept: boolean },
): Promise<void> {
  if (!isId("user", userId)) throw usageError(`not a user id: ${userId}`);
  await withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger, opened) => {
    await connectOrFail(context, messenger, opened);
    let verification;
    try {
      verification = await messenger.verify(userId, { accept: options.accept });
    } catch (error) {
      if (error instanceof UnknownUserError) throw new CliError(error.message);
      throw error;
    }
    const { safetyNumber: number, status, devices } = verification;
    const isChanged = status === "changed";
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
      {
        userId,
        safetyNumber: number.digits,
        qr: number.qr,
        status,
        isVerified: verification.isVerified,
        devices,
      },
      lines.join("\n"),
    );
    if (isChanged)
      throw new CliError(`the identity of ${userId} changed and is not accepted`, {
        exitCode: EXIT_FAILURE,
        code: "IDENTITY_CHANGED",
      });
  });
}
