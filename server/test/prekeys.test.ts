import { sign } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import {
  webCryptoX25519,
  isError,
  linkApprovalProof,
  linkProof,
  loginProof,
  identityDhProof,
  pqPreKeyProof,
  signedPreKeyProof,
  PREKEY_LOW_WATER,
  ErrorCode,
  type PublishPreKeysRequest,
} from "@remessenger/protocol";
import { FrameDriver, type Identity, newDeviceKey } from "../../scripts/harness/frame-driver.ts";
import { STORE_KINDS, startServerOn, type ServerUnderTest } from "./store-targets.ts";

async function fullPublish(identity: Identity, oneTimeCount: number): Promise<PublishPreKeysRequest> {
  const signed = (data: Uint8Array): Uint8Array => new Uint8Array(sign(null, data, identity.key.privateKey));
  const dh = await webCryptoX25519.generateKeyPair();
  const spk = await webCryptoX25519.generateKeyPair();
  const pq = ml_kem768.keygen();
  const oneTime = [];
  for (let i = 1; i <= oneTimeCount; i += 1)
    oneTime.push({ keyId: i, publicKey: (await webCryptoX25519.generateKeyPair()).publicKey });
  return {
    identityDhKey: dh.publicKey,
    identityDhSignature: signed(identityDhProof(dh.publicKey)),
    signedPreKey: { keyId: 1, publicKey: spk.publicKey, signature: signed(signedPreKeyProof(1, spk.publicKey)) },
    oneTimePreKeys: oneTime,
    lastResortPqPreKey: { keyId: 100, publicKey: pq.publicKey, signature: signed(pqPreKeyProof(100, pq.publicKey)) },
    oneTimePqPreKeys: [],
  };
}

async function refusal(promise: Promise<unknown>): Promise<ErrorCode | "accepted"> {
  try {
    await promise;
    return "accepted";
  } catch (error) {
    for (const code of Object.values(ErrorCode)) if (typeof code === "number" && isError(error, code)) return code;
    throw error;
  }
}

describe.each(STORE_KINDS)("prekeys and linked devices (%s store)", (kind) => {
  let target: ServerUnderTest;
  let url: string;

  beforeAll(async () => {
    target = await startServerOn(kind);
    url = target.server.url;
  });

  afterAll(async () => {
    await target.stop();
  });

  async function registered(name: string): Promise<{ driver: FrameDriver; id: Identity }> {
    const driver = await FrameDriver.connect(url);
    return { driver, id: await driver.register(name) };
  }

  // First on a fresh server: the store's first prekey calls then meet other commands in one
  // event-loop turn (with scripts defined lazily, ioredis failed them: "pipeline[functionName] is
  // not a function", and could misalign the replies of the whole auto-pipeline).
  it("takes the first prekey uploads of many devices at once", async () => {
    const devices = await Promise.all(Array.from({ length: 8 }, (_, i) => registered(`d${i}`)));
    const uploads = await Promise.all(devices.map((d) => fullPublish(d.id, 2)));
    const stocks = await Promise.all(
      devices.map((d, i) => d.driver.call({ $case: "publishPreKeys", value: uploads[i] ?? never() })),
    );
    expect(stocks.map((s) => s.stock?.hasBundle)).toEqual(devices.map(() => true));
    const { bundles } = await (devices[0] ?? never()).driver.call({
      $case: "getPreKeyBundles",
      value: { userId: (devices[1] ?? never()).id.userId, deviceIds: [] },
    });
    expect(bundles).toHaveLength(1);
    for (const d of devices) d.driver.close();
  });

  it("stores a signed bundle, hands each one-time prekey out once, and reports the stock at login", async () => {
    const bob = await registered("bob");
    const upload = await fullPublish(bob.id, 3);
    const stock = await bob.driver.call({ $case: "publishPreKeys", value: upload });
    expect(stock.stock).toEqual({
      oneTimePreKeys: 3,
      oneTimePqPreKeys: 0,
      lowWater: PREKEY_LOW_WATER,
      hasBundle: true,
    });
    const alice = await registered("alice");
    const seen = new Set<number>();
    for (let i = 0; i < 4; i += 1) {
      const { bundles } = await alice.driver.call({
        $case: "getPreKeyBundles",
        value: { userId: bob.id.userId, deviceIds: [] },
      });
      expect(bundles).toHaveLength(1);
      const [bundle] = bundles;
      expect(bundle?.identityKey).toEqual(bob.id.key.publicKey);
      expect(bundle?.signedPreKey?.publicKey).toEqual(upload.signedPreKey?.publicKey);
      expect(bundle?.isPqLastResort).toBe(true);
      if (i < 3) seen.add(bundle?.oneTimePreKey?.keyId ?? -1);
      else expect(bundle?.oneTimePreKey).toBeUndefined();
    }
    expect([...seen].sort()).toEqual([1, 2, 3]);
    // The stock (now empty, below low water) comes with the next login, after a restart too.
    bob.driver.close();
    alice.driver.close();
    await target.server.stop();
    await target.server.restart();
    const again = await FrameDriver.connect(url);
    const nonce = (await again.call({ $case: "getChallenge", value: {} })).nonce;
    const login = await again.call({
      $case: "login",
      value: {
        deviceId: bob.id.deviceId,
        nonce,
        signature: new Uint8Array(sign(null, loginProof(nonce, bob.id.deviceId), bob.id.key.privateKey)),
      },
    });
    expect(login.preKeyStock).toEqual({
      oneTimePreKeys: 0,
      oneTimePqPreKeys: 0,
      lowWater: PREKEY_LOW_WATER,
      hasBundle: true,
    });
    again.close();
  });

  it("refuses prekeys not signed by the device's identity key, and keys of the wrong size", async () => {
    const bob = await registered("bob");
    const upload = await fullPublish(bob.id, 1);
    const other = await registered("mallory");
    const forged = await fullPublish(other.id, 1);
    expect(
      await refusal(
        bob.driver.call({ $case: "publishPreKeys", value: { ...upload, signedPreKey: forged.signedPreKey } }),
      ),
    ).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    expect(
      await refusal(
        bob.driver.call({
          $case: "publishPreKeys",
          value: { ...upload, oneTimePreKeys: [{ keyId: 9, publicKey: new Uint8Array(5) }] },
        }),
      ),
    ).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    // Nothing was stored by the refused requests.
    const { bundles } = await other.driver.call({
      $case: "getPreKeyBundles",
      value: { userId: bob.id.userId, deviceIds: [] },
    });
    expect(bundles).toEqual([]);
    expect(
      await refusal(other.driver.call({ $case: "getPreKeyBundles", value: { userId: "nope", deviceIds: [] } })),
    ).toBe(ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
  });

  it("links a new device approved by an existing one; it receives the user's chats from then on", async () => {
    const alice = await registered("alice");
    const bob = await registered("bob");
    const chatId = await alice.driver.createDirectChat(bob.id.userId);
    await alice.driver.send(chatId, "before the link");

    const key = newDeviceKey();
    const expiresAtMs = Date.now() + 60_000;
    const approval = new Uint8Array(
      sign(null, linkApprovalProof(bob.id.userId, key.publicKey, expiresAtMs), bob.id.key.privateKey),
    );
    const laptop = await FrameDriver.connect(url);
    const nonce = (await laptop.call({ $case: "getChallenge", value: {} })).nonce;
    const linked = await laptop.call({
      $case: "linkDevice",
      value: {
        userId: bob.id.userId,
        identityKey: key.publicKey,
        nonce,
        signature: new Uint8Array(sign(null, linkProof(nonce, key.publicKey, bob.id.userId), key.privateKey)),
        approvedByDeviceId: bob.id.deviceId,
        approvalExpiresAtMs: expiresAtMs,
        approvalSignature: approval,
      },
    });
    expect(linked.userId).toBe(bob.id.userId);
    const { user } = await alice.driver.call({ $case: "getUser", value: { userId: bob.id.userId } });
    expect(user?.devices.map((d) => d.deviceId)).toEqual([bob.id.deviceId, linked.deviceId]);
    expect(user?.devices[1]?.approvedByDeviceId).toBe(bob.id.deviceId);
    expect(user?.devices[1]?.approvalSignature).toEqual(approval);

    await laptop.subscribe();
    await alice.driver.send(chatId, "after the link");
    await laptop.waitFor(() => laptop.messages().length === 1, "the message sent after the link");
    expect(new TextDecoder().decode(laptop.messages()[0]?.payload)).toBe("after the link");
    laptop.close();
  });

  it("refuses a link approved by another user's device, or with an expired approval", async () => {
    const bob = await registered("bob");
    const mallory = await registered("mallory");
    const key = newDeviceKey();
    const attempt = async (approver: Identity, expiresAtMs: number): Promise<ErrorCode | "accepted"> => {
      const driver = await FrameDriver.connect(url);
      const nonce = (await driver.call({ $case: "getChallenge", value: {} })).nonce;
      const result = await refusal(
        driver.call({
          $case: "linkDevice",
          value: {
            userId: bob.id.userId,
            identityKey: key.publicKey,
            nonce,
            signature: new Uint8Array(sign(null, linkProof(nonce, key.publicKey, bob.id.userId), key.privateKey)),
            approvedByDeviceId: approver.deviceId,
            approvalExpiresAtMs: expiresAtMs,
            approvalSignature: new Uint8Array(
              sign(null, linkApprovalProof(bob.id.userId, key.publicKey, expiresAtMs), approver.key.privateKey),
            ),
          },
        }),
      );
      driver.close();
      return result;
    };
    expect(await attempt(mallory.id, Date.now() + 60_000)).toBe(ErrorCode.ERROR_CODE_PERMISSION_DENIED);
    expect(await attempt(bob.id, Date.now() - 1)).toBe(ErrorCode.ERROR_CODE_PERMISSION_DENIED);
    const { user } = await bob.driver.call({ $case: "getUser", value: { userId: bob.id.userId } });
    expect(user?.devices).toHaveLength(1);
  });
});

function never(): never {
  throw new Error("missing");
}
