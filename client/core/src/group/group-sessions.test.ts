import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { makeDeviceIdentity } from "../e2e/session-setup.ts";
import {
  stablelibX25519,
  linkApprovalProof,
  messageIdToHex,
  randomBytes,
  type GroupState,
  draftOperation,
  nextGroupState,
  operationProof,
  ChatKind,
  type Device,
  GroupEnvelope,
  GroupOperation,
  GroupOperationKind,
  type Message,
  type PreKeyBundle,
  SendMessageRequest,
} from "@remessenger/protocol";
import { webCryptoEd25519 } from "../crypto/webcrypto-ed25519.ts";
import type { DeviceSigner } from "../crypto/device-signer.ts";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { systemClock } from "../runtime/clock.ts";
import { E2eLock } from "../e2e/e2e-lock.ts";
import { type E2eServer, PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import { contentText, textContent } from "../session/payload-codec.ts";
import type { GraceWindow } from "./epoch-window.ts";
import { COVERAGE_CHECK_MS } from "./key-distribution.ts";
import { GroupSessions, type GroupServer } from "./group-sessions.ts";

const CHAT = "c" + "g".repeat(26);
const letter = (n: number): string => "abcdefghij".charAt(n);
const user = (n: number): string => `u${letter(n).repeat(26)}`;
const dev = (n: number): string => `d${letter(n).repeat(26)}`;
const WINDOW: GraceWindow = { ms: Number.MAX_SAFE_INTEGER, messages: 6 };

interface LabDevice {
  userId: string;
  deviceId: string;
  signer: DeviceSigner;
  store: MemoryClientStore;
  e2e: PairwiseSessions;
  group: GroupSessions;
  /** Next log index to process. */
  cursor: number;
  read: Array<{ seq: number; text: string }>;
  refused: Array<{ seq: number; reason: string }>;
  outbox: Array<{ messageId: string; sealed: Uint8Array; text: string }>;
}

/**
 * The server's side of a group, in memory: one sequence, the device lists and
 * prekey bundles, the chain as the server keeps it. Every device may read the
 * whole sequence (as a server that ignores membership could make it), which is
 * what the entitlement checks below need.
 */
class GroupLab {
  readonly log: Message[] = [];
  readonly devices = new Map<string, LabDevice>();
  private readonly deviceLists = new Map<string, Device[]>();
  private readonly bundles = new Map<string, PreKeyBundle>();
  private readonly oneTime = new Map<string, PreKeyBundle["oneTimePreKey"][]>();
  state: GroupState | undefined;
  private timeMs = 1_000;
  readonly clock = {
    nowMs: (): number => this.timeMs,
    setTimer: (callback: () => void, delayMs: number) => systemClock.setTimer(callback, delayMs),
  };

  /** Moves the lab's clock (the server's and every device's) forward. */
  advance(ms: number): void {
    this.timeMs += ms;
  }
  readonly window: GraceWindow;

  constructor(window: GraceWindow) {
    this.window = window;
  }

  /** A new device of user `n` (its first, or one linked with `approver`'s approval). */
  async addDevice(n: number, approver?: LabDevice): Promise<LabDevice> {
    const userId = user(n);
    const deviceId = approver === undefined ? dev(n) : `d${letter(n).repeat(25)}z`;
    const signer = await webCryptoEd25519.signerFromSeed(webCryptoEd25519.generateSeed());
    const identity = await makeDeviceIdentity(signer, await stablelibX25519.generateKeyPair());
    const store = new MemoryClientStore();
    const storageKey = randomBytes(32);
    const lock = new E2eLock();
    const e2e = new PairwiseSessions({
      userId,
      deviceId,
      identity,
      storageKey,
      store,
      lock,
      x25519: stablelibX25519,
      ed25519: webCryptoEd25519,
      clock: this.clock,
    });
    const group = new GroupSessions({
      userId,
      deviceId,
      storageKey,
      store,
      lock,
      ed25519: webCryptoEd25519,
      pairwise: e2e,
      clock: this.clock,
      window: this.window,
    });
    e2e.setServer(this.e2eServer(userId, deviceId, signer.publicKey));
    group.setServer(this.groupServer(userId, deviceId));
    const expiresAtMs = Number.MAX_SAFE_INTEGER;
    this.deviceLists.set(userId, [
      ...(this.deviceLists.get(userId) ?? []),
      {
        deviceId,
        identityKey: signer.publicKey,
        createdAtMs: 0,
        approvedByDeviceId: approver?.deviceId ?? "",
        approvalSignature:
          approver === undefined
            ? new Uint8Array(0)
            : await approver.signer.sign(linkApprovalProof(userId, signer.publicKey, expiresAtMs)),
        approvalExpiresAtMs: approver === undefined ? 0 : expiresAtMs,
      },
    ]);
    await e2e.maintainPreKeys(undefined);
    const device: LabDevice = {
      userId,
      deviceId,
      signer,
      store,
      e2e,
      group,
      cursor: 0,
      read: [],
      refused: [],
      outbox: [],
    };
    this.devices.set(deviceId, device);
    return device;
  }

  /** Appends what a device sends; the server's own checks are not modelled beyond the chain. */
  append(from: LabDevice, request: SendMessageRequest): Message {
    const message: Message = {
      chatId: request.chatId,
      seq: this.log.length + 1,
      messageId: request.messageId,
      senderUserId: from.userId,
      senderDeviceId: from.deviceId,
      serverTimeMs: (this.timeMs += 1),
      payload: request.payload,
      devicePayloads: request.devicePayloads,
      groupOperation: request.groupOperation,
    };
    if (request.groupOperation !== undefined) {
      const { operation } = request.groupOperation;
      this.state = nextGroupState(CHAT, this.state, operation, decode(operation));
    }
    this.log.push(message);
    return message;
  }

  /** The admin signs an operation on the chain as it verified it, after reading everything. */
  async operate(admin: LabDevice, kind: GroupOperationKind, userIds: string[] = []): Promise<void> {
    await this.catchUp(admin);
    const { operation } = draftOperation(CHAT, await admin.group.groupState(CHAT), {
      kind,
      userIds,
      title: "lab",
      actorUserId: admin.userId,
      actorDeviceId: admin.deviceId,
      createdAtMs: 0,
    });
    const signature = await admin.signer.sign(operationProof(operation));
    this.append(admin, {
      chatId: CHAT,
      messageId: randomBytes(16),
      payload: new Uint8Array(0),
      devicePayloads: [],
      groupOperation: { operation, signature },
    });
    await this.catchUp(admin);
  }

  /** A member writes a message: sealed now, in the epoch it knows. */
  async write(device: LabDevice, text: string): Promise<void> {
    const messageId = messageIdToHex(randomBytes(16));
    const sealed = await device.group.seal(CHAT, messageId, textContent(text, 0));
    await device.store.writeE2e(sealed.writes);
    device.outbox.push({ messageId, sealed: sealed.sealed, text });
  }

  /**
   * Sends the device's outbox as ClientSession does: prepareSend, reseal when
   * told. `isNewConnection` makes the device compare its chain with the
   * server's first; without it the device sends on what it knows (a sender
   * whose pushes lag behind: its messages may land after rotations it has
   * not heard of).
   */
  async flush(device: LabDevice, isNewConnection = true): Promise<Array<{ seq: number; text: string; epoch: number }>> {
    if (isNewConnection) device.group.setServer(this.groupServer(device.userId, device.deviceId));
    const sent = [];
    for (const entry of device.outbox.splice(0)) {
      let sealed = entry.sealed;
      for (let round = 0; round < 3; round += 1) {
        let verdict;
        try {
          verdict = await device.group.prepareSend(CHAT, sealed);
        } catch {
          break; // no longer a member: the outbox marks it failed
        }
        if (verdict === "reseal") {
          const again = await device.group.seal(CHAT, entry.messageId, textContent(entry.text, 0));
          await device.store.writeE2e(again.writes);
          sealed = again.sealed;
          continue;
        }
        const request = SendMessageRequest.decode(sealed);
        const message = this.append(device, request);
        sent.push({ seq: message.seq, text: entry.text, epoch: GroupEnvelope.decode(request.payload).epoch });
        break;
      }
    }
    return sent;
  }

  /** Processes up to `count` entries of the sequence on `device`, as ClientSession does. */
  async deliver(device: LabDevice, count = Number.MAX_SAFE_INTEGER): Promise<void> {
    for (let i = 0; i < count && device.cursor < this.log.length; i += 1) {
      const message = this.log[device.cursor];
      device.cursor += 1;
      if (message === undefined) break;
      if (message.groupOperation !== undefined) {
        const outcome = await device.group.receiveOperation(message);
        if (outcome.kind === "applied") await device.store.writeE2e(outcome.writes);
        else device.refused.push({ seq: message.seq, reason: outcome.reason });
        continue;
      }
      if (message.senderDeviceId === device.deviceId) continue;
      if (message.payload.length > 0) {
        const opened = await device.group.open(message);
        if (opened.kind === "content") {
          await device.store.writeE2e(opened.writes);
          device.read.push({ seq: message.seq, text: contentText(opened.content) ?? "" });
        } else {
          device.refused.push({ seq: message.seq, reason: opened.reason });
        }
        continue;
      }
      if (!message.devicePayloads.some((p) => p.deviceId === device.deviceId)) continue;
      const opened = await device.e2e.open(message);
      if (opened.kind !== "content" || opened.content.body?.$case !== "senderKey") {
        throw new Error(
          `a distribution did not open: ${opened.kind === "content" ? "not a sender key" : opened.reason}`,
        );
      }
      const accepted = await device.group.acceptDistribution(message, opened.content.body.value);
      if (accepted.kind !== "accepted") throw new Error(`distribution refused: ${accepted.reason}`);
      await device.store.writeE2e([...opened.writes, ...accepted.writes]);
    }
  }

  async catchUp(device: LabDevice): Promise<void> {
    await this.deliver(device);
  }

  private groupServer(userId: string, deviceId: string): GroupServer {
    return {
      getChat: (chatId) =>
        Promise.resolve({
          chatId,
          kind: ChatKind.CHAT_KIND_GROUP,
          title: this.state?.title ?? "",
          memberUserIds: this.state?.members ?? [],
          headSeq: this.log.length,
          createdAtMs: 0,
          createdByUserId: "",
          receipts: [],
          group: {
            adminUserIds: this.state?.admins ?? [],
            epoch: this.state?.epoch ?? 0,
            lastOperationHash: this.state?.lastOperationHash ?? new Uint8Array(32),
            lastOperationSeq: this.log.findLast((m) => m.groupOperation !== undefined)?.seq ?? 0,
          },
        }),
      getGroupOperations: (_chatId, afterSeq, limit) =>
        Promise.resolve(this.log.filter((m) => m.groupOperation !== undefined && m.seq > afterSeq).slice(0, limit)),
      sendMessage: (request) => {
        const from = this.devices.get(deviceId);
        if (from === undefined || from.userId !== userId) throw new Error("unknown device");
        const message = this.append(from, request);
        return Promise.resolve({ seq: message.seq, duplicate: false, serverTimeMs: message.serverTimeMs });
      },
    };
  }

  private e2eServer(userId: string, deviceId: string, identityKey: Uint8Array): E2eServer {
    return {
      getUser: (id) => Promise.resolve({ userId: id, displayName: id, devices: this.deviceLists.get(id) ?? [] }),
      getChat: () => Promise.reject(new Error("the group layer names the members")),
      getPreKeyBundles: (id, deviceIds) =>
        Promise.resolve(
          (this.deviceLists.get(id) ?? [])
            .filter((d) => deviceIds.length === 0 || deviceIds.includes(d.deviceId))
            .flatMap((d) => {
              const bundle = this.bundles.get(d.deviceId);
              return bundle === undefined ? [] : [{ ...bundle, oneTimePreKey: this.oneTime.get(d.deviceId)?.shift() }];
            }),
        ),
      publishPreKeys: (request) => {
        this.oneTime.set(deviceId, [...(this.oneTime.get(deviceId) ?? []), ...request.oneTimePreKeys]);
        if (request.identityDhKey.length > 0) {
          this.bundles.set(deviceId, {
            userId,
            deviceId,
            identityKey,
            identityDhKey: request.identityDhKey,
            identityDhSignature: request.identityDhSignature,
            signedPreKey: request.signedPreKey,
            oneTimePreKey: undefined,
            pqPreKey: request.lastResortPqPreKey,
            isPqLastResort: true,
          });
        }
        return Promise.resolve({ oneTimePreKeys: 50, oneTimePqPreKeys: 0, lowWater: 20, hasBundle: true });
      },
    };
  }
}

function decode(operation: Uint8Array): GroupOperation {
  return GroupOperation.decode(operation);
}

/** A lab with users 1..count, user 1 the admin of a group of users 1..members. */
async function labWith(
  count: number,
  members: number,
  window = WINDOW,
): Promise<{ lab: GroupLab; devices: LabDevice[] }> {
  const lab = new GroupLab(window);
  const devices = [];
  for (let n = 1; n <= count; n += 1) devices.push(await lab.addDevice(n));
  const admin = devices[0];
  if (admin === undefined) throw new Error("no admin");
  const { operation } = draftOperation(CHAT, undefined, {
    kind: GroupOperationKind.GROUP_OPERATION_KIND_CREATE,
    userIds: devices.slice(0, members).map((d) => d.userId),
    title: "lab",
    actorUserId: admin.userId,
    actorDeviceId: admin.deviceId,
    createdAtMs: 0,
  });
  lab.append(admin, {
    chatId: CHAT,
    messageId: randomBytes(16),
    payload: new Uint8Array(0),
    devicePayloads: [],
    groupOperation: { operation, signature: await admin.signer.sign(operationProof(operation)) },
  });
  return { lab, devices };
}

/** Members during each epoch and at each seq, from the server's log (the model the checks use). */
function membership(lab: GroupLab) {
  const epochs = new Map<number, Set<string>>();
  const atSeq = new Map<number, Set<string>>();
  /** Seq of the operation that started each epoch. */
  const starts = new Map<number, number>();
  let state: GroupState | undefined;
  for (const message of lab.log) {
    atSeq.set(message.seq, new Set(state?.members ?? []));
    if (message.groupOperation !== undefined) {
      state = nextGroupState(CHAT, state, message.groupOperation.operation, decode(message.groupOperation.operation));
      if (!epochs.has(state.epoch)) {
        epochs.set(state.epoch, new Set(state.members));
        starts.set(state.epoch, message.seq);
      }
    }
  }
  return { epochs, atSeq, starts };
}

const ACTION = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("write" as const), who: fc.integer({ min: 1, max: 5 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("flush" as const),
      who: fc.integer({ min: 1, max: 5 }),
      isNewConnection: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("deliver" as const),
      who: fc.integer({ min: 1, max: 5 }),
      count: fc.integer({ min: 1, max: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom("add" as const, "remove" as const),
      who: fc.integer({ min: 2, max: 5 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("rotate" as const) }) },
);

describe("GroupSessions", () => {
  it("every member reads every message of the epochs it belongs to, once and in order; nobody reads beyond its membership", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(ACTION, { minLength: 12, maxLength: 32 }), async (actions) => {
        const { lab, devices } = await labWith(5, 3);
        const [admin] = devices;
        if (admin === undefined) throw new Error("no admin");
        const at = (who: number): LabDevice => {
          const d = devices[who - 1];
          if (d === undefined) throw new Error(`no device ${who}`);
          return d;
        };
        const sent: Array<{ seq: number; text: string; epoch: number }> = [];
        let written = 0;
        for (const action of actions) {
          const members = lab.state?.members ?? [];
          switch (action.kind) {
            case "write": {
              const device = at(action.who);
              await lab.deliver(device, 2);
              const state = await device.group.groupState(CHAT);
              if (state?.members.includes(device.userId) !== true) break;
              await lab.write(device, `m${(written += 1)} from ${action.who}`);
              break;
            }
            case "flush":
              sent.push(...(await lab.flush(at(action.who), action.isNewConnection)));
              break;
            case "deliver":
              await lab.deliver(at(action.who), action.count);
              break;
            case "add":
              if (!members.includes(at(action.who).userId)) {
                await lab.operate(admin, GroupOperationKind.GROUP_OPERATION_KIND_ADD, [at(action.who).userId]);
              }
              break;
            case "remove":
              if (members.includes(at(action.who).userId)) {
                await lab.operate(admin, GroupOperationKind.GROUP_OPERATION_KIND_REMOVE, [at(action.who).userId]);
              }
              break;
            case "rotate":
              await lab.operate(admin, GroupOperationKind.GROUP_OPERATION_KIND_ROTATE);
              break;
          }
        }
        for (const device of devices) sent.push(...(await lab.flush(device)));
        for (const device of devices) await lab.deliver(device);

        const { epochs, atSeq, starts } = membership(lab);
        for (const device of devices) {
          const reads = new Map(device.read.map((r) => [r.seq, r.text]));
          expect(reads.size).toBe(device.read.length); // once each
          expect(device.read.map((r) => r.seq)).toEqual([...reads.keys()].sort((a, b) => a - b));
          for (const message of sent) {
            const sender = lab.log[message.seq - 1];
            if (sender?.senderDeviceId === device.deviceId) continue;
            // The model of the rules: the epoch in effect where it landed, or an ended one within the window.
            const current = Math.max(...[...starts].filter(([, seq]) => seq < message.seq).map(([epoch]) => epoch));
            const end = starts.get(message.epoch + 1);
            const isInWindow = message.epoch === current || (end !== undefined && message.seq - end <= WINDOW.messages);
            const senderId = sender?.senderUserId ?? "";
            const isSenderMember =
              atSeq.get(message.seq)?.has(senderId) === true && epochs.get(message.epoch)?.has(senderId) === true;
            const isEntitled = epochs.get(message.epoch)?.has(device.userId) === true;
            const wasDelivered = atSeq.get(message.seq)?.has(device.userId) === true;
            if (isInWindow && isSenderMember && isEntitled && wasDelivered) {
              expect(reads.get(message.seq)).toBe(message.text);
            }
            if (!isInWindow || !isSenderMember || !isEntitled) expect(reads.has(message.seq)).toBe(false);
          }
        }
      }),
      { numRuns: 6, endOnFailure: true },
    );
  }, 120_000);

  it("a message of an ended epoch opens within the grace window and is refused after it, with the reason", async () => {
    const { lab, devices } = await labWith(3, 3, { ms: Number.MAX_SAFE_INTEGER, messages: 3 });
    const [admin, bob, carol] = devices;
    if (admin === undefined || bob === undefined || carol === undefined) throw new Error("no devices");
    await lab.deliver(bob);
    await lab.write(bob, "warm-up");
    await lab.flush(bob); // bob's key of epoch 1 reached everyone
    await lab.write(bob, "in flight");
    await lab.write(bob, "late");
    const [inFlight, late] = bob.outbox.splice(0);
    if (inFlight === undefined || late === undefined) throw new Error("nothing written");
    await lab.operate(admin, GroupOperationKind.GROUP_OPERATION_KIND_ROTATE);
    // In flight during the rotation: it lands right after it.
    const first = lab.append(bob, SendMessageRequest.decode(inFlight.sealed));
    await lab.write(admin, "a");
    await lab.write(admin, "b");
    await lab.write(admin, "c");
    await lab.flush(admin);
    // Far too late: more than 3 entries after the rotation.
    const second = lab.append(bob, SendMessageRequest.decode(late.sealed));
    await lab.deliver(carol);
    expect(carol.read.find((r) => r.seq === first.seq)?.text).toBe("in flight");
    expect(carol.read.some((r) => r.seq === second.seq)).toBe(false);
    expect(carol.refused).toContainEqual({ seq: second.seq, reason: "epoch-expired" });
    expect(carol.read.map((r) => r.text)).toEqual(["warm-up", "in flight", "a", "b", "c"]);
    // The keys of epoch 1 went once its window closed: nothing of it can be opened here any more.
    const keys = await carol.store.listE2eKeys(`group/${CHAT}/`);
    expect(keys.some((key) => key.endsWith("/2"))).toBe(true);
    expect(keys.filter((key) => key.endsWith("/1"))).toEqual([]);
  }, 60_000);

  it("a sender that heard of a rotation seals its queued message again in the current epoch", async () => {
    const { lab, devices } = await labWith(3, 3, { ms: Number.MAX_SAFE_INTEGER, messages: 2 });
    const [admin, bob, carol] = devices;
    if (admin === undefined || bob === undefined || carol === undefined) throw new Error("no devices");
    await lab.deliver(bob);
    await lab.write(bob, "written offline");
    await lab.operate(admin, GroupOperationKind.GROUP_OPERATION_KIND_ROTATE);
    await lab.write(admin, "a");
    await lab.write(admin, "b");
    await lab.flush(admin);
    const sent = await lab.flush(bob);
    expect(sent.map((s) => s.epoch)).toEqual([2]);
    await lab.deliver(carol);
    expect(carol.read.map((r) => r.text)).toEqual(["a", "b", "written offline"]);
  }, 60_000);

  it("hands the sender key to a device linked mid-epoch once the sender looks again, from where the chain stands", async () => {
    const { lab, devices } = await labWith(3, 3);
    const [alice, bob, carol] = devices;
    if (alice === undefined || bob === undefined || carol === undefined) throw new Error("no devices");
    await lab.deliver(alice);
    await lab.write(alice, "before the link");
    await lab.flush(alice);
    const laptop = await lab.addDevice(2, bob);
    await lab.write(alice, "right after the link");
    await lab.flush(alice, false); // the sender looked at the devices less than a minute ago
    lab.advance(COVERAGE_CHECK_MS + 1);
    await lab.write(alice, "after the next look");
    await lab.flush(alice, false);
    for (const device of [bob, carol, laptop]) await lab.deliver(device);
    expect(bob.read.map((r) => r.text)).toEqual(["before the link", "right after the link", "after the next look"]);
    // The laptop gets the chain as it stands at the next look: nothing sent before it.
    expect(laptop.read.map((r) => r.text)).toEqual(["after the next look"]);
    expect(laptop.refused.map((r) => r.reason)).toEqual(["no-sender-key", "no-sender-key"]);
  }, 60_000);

  it("hands its sender key again to a member that lost it, on request: later messages open there, earlier ones stay refused; no key to the removed or for an epoch before joining", async () => {
    const { lab, devices } = await labWith(4, 3);
    const [alice, bob, carol, dave] = devices;
    if (alice === undefined || bob === undefined || carol === undefined || dave === undefined) throw new Error("none");
    for (const device of [alice, bob, carol]) await lab.deliver(device);
    await lab.write(alice, "one");
    await lab.flush(alice);
    await lab.deliver(bob);
    // Bob's copy of alice's key is lost.
    const lost = `group/${CHAT}/from/${alice.deviceId}/1`;
    const record = (await bob.store.readE2e([lost])).get(lost);
    if (record === undefined) throw new Error("bob holds no key of alice");
    await bob.store.writeE2e([{ key: lost, expectedVersion: record.version, value: undefined }]);
    await lab.write(alice, "two");
    await lab.flush(alice);
    await lab.write(alice, "queued before the answer");
    const seq = lab.log.length + 1;
    await lab.deliver(bob);
    expect(bob.refused).toEqual([{ seq: seq - 1, reason: "no-sender-key" }]);
    const twoMessage = lab.log[seq - 2];
    if (twoMessage === undefined) throw new Error("no message two");
    expect(await bob.group.open(twoMessage)).toMatchObject({ reason: "no-sender-key", missingEpoch: 1 });

    const ask = (epoch: number, target = alice.deviceId) => ({ chatId: CHAT, epoch, targetDeviceId: target });
    expect(await alice.group.answerKeyRequest(CHAT, bob.userId, bob.deviceId, ask(1))).toEqual({
      kind: "answered",
      epoch: 1,
      iteration: 3, // "one", "two" and the queued message were sealed before
    });
    // The message sealed before the answer is sealed again, so bob reads it too.
    await lab.flush(alice);
    await lab.write(alice, "three");
    await lab.flush(alice);
    await lab.deliver(bob);
    await lab.deliver(carol);
    expect(bob.read.map((r) => r.text)).toEqual(["one", "queued before the answer", "three"]);
    expect(bob.refused.map((r) => r.reason)).toEqual(["no-sender-key"]);
    // Carol holds her key as before and reads everything once.
    expect(carol.read.map((r) => r.text)).toEqual(["one", "two", "queued before the answer", "three"]);

    await lab.operate(alice, GroupOperationKind.GROUP_OPERATION_KIND_ADD, [dave.userId]);
    await lab.operate(alice, GroupOperationKind.GROUP_OPERATION_KIND_REMOVE, [carol.userId]);
    const before = lab.log.length;
    const refusal = async (from: LabDevice, epoch: number, target?: string) => {
      const outcome = await alice.group.answerKeyRequest(CHAT, from.userId, from.deviceId, ask(epoch, target));
      return outcome.kind === "refused" ? outcome.reason : "answered";
    };
    expect(await refusal(dave, 1)).toBe("not-entitled");
    expect(await refusal(carol, 1)).toBe("not-a-member");
    expect(await refusal(carol, 3)).toBe("not-a-member");
    expect(await refusal(bob, 1, bob.deviceId)).toBe("bad-request");
    expect(await refusal(bob, 3)).toBe("no-key"); // alice has sent nothing in epoch 3
    expect(await refusal(bob, 4)).toBe("unknown-epoch");
    // Nothing was sent for any refused request.
    expect(lab.log.length).toBe(before);
  }, 60_000);

  it("rejects an operation that is not the chain's: a non-admin's, a forged signature, another device's", async () => {
    const { lab, devices } = await labWith(3, 3);
    const [admin, bob, carol] = devices;
    if (admin === undefined || bob === undefined || carol === undefined) throw new Error("no devices");
    await lab.deliver(bob);
    await lab.deliver(carol);
    const state = await bob.group.groupState(CHAT);
    // Drafted as the admin (the rules refuse to draft anything else), then made to name `actor`.
    const draft = (actor: LabDevice) =>
      GroupOperation.encode({
        ...decode(
          draftOperation(CHAT, state, {
            kind: GroupOperationKind.GROUP_OPERATION_KIND_REMOVE,
            userIds: [carol.userId],
            actorUserId: admin.userId,
            actorDeviceId: admin.deviceId,
            createdAtMs: 0,
          }).operation,
        ),
        actorUserId: actor.userId,
        actorDeviceId: actor.deviceId,
      }).finish();
    const attempt = async (from: LabDevice, operation: Uint8Array, signer: DeviceSigner) => {
      const message: Message = {
        chatId: CHAT,
        seq: lab.log.length + 1,
        messageId: randomBytes(16),
        senderUserId: from.userId,
        senderDeviceId: from.deviceId,
        serverTimeMs: 5_000,
        payload: new Uint8Array(0),
        devicePayloads: [],
        groupOperation: { operation, signature: await signer.sign(operationProof(operation)) },
      };
      return carol.group.receiveOperation(message);
    };
    // A non-admin (bob) removing carol: the rules refuse it.
    expect(await attempt(bob, draft(bob), bob.signer)).toMatchObject({ kind: "rejected", reason: "not-admin" });
    // The admin's operation signed by someone else: a forgery.
    expect(await attempt(admin, draft(admin), bob.signer)).toMatchObject({ kind: "rejected", reason: "bad-signature" });
    // Sent by another device than its actor.
    expect(await attempt(bob, draft(admin), admin.signer)).toMatchObject({ kind: "rejected", reason: "bad-signature" });
    expect((await carol.group.groupState(CHAT))?.members).toContain(carol.userId);
  }, 60_000);
});
