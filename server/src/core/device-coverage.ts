/**
 * Device coverage: a message sealed per device must carry one ciphertext for
 * each device that should read it, and none for anyone else (Signal's
 * "mismatched devices"). The server checks it when the send is appended, so a
 * sender whose device list is out of date learns it at once (DEVICES_CHANGED,
 * nothing stored) instead of a recipient device finding no payload for it.
 *
 * - Direct chats: a send with device payloads must cover every device of
 *   both members except the sending one. A device that has not published a
 *   prekey bundle yet cannot be encrypted for, so it is never reported
 *   missing (a payload for it is welcome). A send with only the shared
 *   `payload` (tools, load tests) is not per device and not checked.
 * - Groups (Sender Keys, one shared payload) are not checked here; their
 *   per-device key-distribution messages can use `coverageGap` with their own
 *   recipient set.
 *
 * Invariant: a refused send stores nothing; the gap names exactly the device
 * ids to add (missing) and to drop (stale), each sorted.
 */
import { DevicesChangedError, RemessengerError, ChatKind, ErrorCode } from "@remessenger/protocol";
import type { ChatState, MessageDraft, Store } from "../store/store.ts";

export interface CoverageGap {
  missingDeviceIds: string[];
  staleDeviceIds: string[];
}

/**
 * What `payloadDeviceIds` lacks of `expected` (missing) and holds beyond it
 * (stale); undefined when they match exactly. Pure.
 */
export function coverageGap(expected: Iterable<string>, payloadDeviceIds: readonly string[]): CoverageGap | undefined {
  const wanted = new Set(expected);
  const given = new Set(payloadDeviceIds);
  const missingDeviceIds = [...wanted].filter((id) => !given.has(id)).sort();
  const staleDeviceIds = [...given].filter((id) => !wanted.has(id)).sort();
  return missingDeviceIds.length === 0 && staleDeviceIds.length === 0
    ? undefined
    : { missingDeviceIds, staleDeviceIds };
}

/** The refusal a sender gets for a gap. */
export function devicesChangedError(gap: CoverageGap): DevicesChangedError {
  const parts = [];
  if (gap.missingDeviceIds.length > 0) parts.push(`missing ${gap.missingDeviceIds.join(", ")}`);
  if (gap.staleDeviceIds.length > 0) parts.push(`stale ${gap.staleDeviceIds.join(", ")}`);
  return new DevicesChangedError(`the chat's devices changed (${parts.join("; ")}): seal for them and resend`, gap);
}

/**
 * Checks a batch of sends to one chat against the devices the store knows
 * now. Returns, per draft, the error that refuses it (or undefined). Reads
 * each member's device list once per batch; bundles only for missing devices.
 */
export async function checkDeviceCoverage(
  store: Pick<Store, "listUserDevices" | "countPreKeys">,
  chat: ChatState,
  drafts: readonly MessageDraft[],
): Promise<Array<RemessengerError | undefined>> {
  if (chat.kind !== ChatKind.CHAT_KIND_DIRECT || drafts.every((d) => d.devicePayloads.length === 0)) {
    return drafts.map(() => undefined);
  }
  let devices: string[];
  try {
    devices = (await Promise.all(chat.memberUserIds.map((userId) => store.listUserDevices(userId))))
      .flat()
      .map((d) => d.deviceId);
  } catch (error) {
    const unavailable = new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "device list unavailable, retry", {
      cause: error,
      retryAfterMs: 500,
    });
    return drafts.map(() => unavailable);
  }
  const hasBundle = new Map<string, Promise<boolean>>();
  const bundleOf = (deviceId: string): Promise<boolean> => {
    let known = hasBundle.get(deviceId);
    if (known === undefined) {
      known = store.countPreKeys(deviceId).then((counts) => counts.hasBundle);
      hasBundle.set(deviceId, known);
    }
    return known;
  };
  return Promise.all(
    drafts.map(async (draft) => {
      if (draft.devicePayloads.length === 0) return undefined;
      const gap = coverageGap(
        devices.filter((id) => id !== draft.senderDeviceId),
        draft.devicePayloads.map((p) => p.deviceId),
      );
      if (gap === undefined) return undefined;
      try {
        const readable = await Promise.all(gap.missingDeviceIds.map(bundleOf));
        const missingDeviceIds = gap.missingDeviceIds.filter((_, i) => readable[i] === true);
        if (missingDeviceIds.length === 0 && gap.staleDeviceIds.length === 0) return undefined;
        return devicesChangedError({ missingDeviceIds, staleDeviceIds: gap.staleDeviceIds });
      } catch (error) {
        return new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "prekey stock unavailable, retry", {
          cause: error,
          retryAfterMs: 500,
        });
      }
    }),
  );
}
