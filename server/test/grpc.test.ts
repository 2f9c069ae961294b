/**
 * The gRPC edge on one server: the whole path (register, login, chat, send,
 * subscribe), the statuses of bad calls, the structured error details in
 * `grpc-status-details-bin` on gRPC and gRPC-web, undecodable requests
 * (authentication first, then BAD_FRAME), and the CreateChat rules.
 */
import { sign } from "node:crypto";
import { Client, Metadata as RawMetadata, credentials } from "@grpc/grpc-js";
import { Metadata, Status, createChannel, createClient, type Channel, ClientError } from "nice-grpc";
import {
  ClientError as WebClientError,
  FetchTransport,
  Metadata as WebMetadata,
  createChannel as createWebChannel,
  createClient as createWebClient,
} from "nice-grpc-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeStatusDetails,
  ErrorCode,
  ErrorDetail,
  GRPC_STATUS_DETAILS_KEY,
  newId,
  loginProof,
  registerProof,
  newMessageId,
  AuthServiceDefinition,
  ChatKind,
  ChatServiceDefinition,
  MessageServiceDefinition,
  UserServiceDefinition,
} from "@remessenger/protocol";
import { startServer, type TestServer } from "../../scripts/harness/server.ts";
import { newDeviceKey } from "../../scripts/harness/frame-driver.ts";

describe("gRPC edge", () => {
  let server: TestServer;
  let channel: Channel;

  beforeAll(async () => {
    server = await startServer();
    channel = createChannel(server.grpcAddress);
  });

  afterAll(async () => {
    channel.close();
    await server.cleanup();
  });

  async function registered(name: string) {
    const auth = createClient(AuthServiceDefinition, channel);
    const key = newDeviceKey();
    const { nonce } = await auth.getChallenge({});
    const signature = sign(null, registerProof(nonce, key.publicKey, name), key.privateKey);
    const result = await auth.register({ displayName: name, identityKey: key.publicKey, nonce, signature });
    // Logging in again with a fresh challenge gives a working token too.
    const second = await auth.getChallenge({});
    const login = await auth.login({
      deviceId: result.deviceId,
      nonce: second.nonce,
      signature: sign(null, loginProof(second.nonce, result.deviceId), key.privateKey),
    });
    const sessionTtlMs = login.sessionExpiresAtMs - login.serverTimeMs;
    return {
      ...result,
      sessionTtlMs,
      bearer: `Bearer ${login.sessionToken}`,
      metadata: Metadata({ authorization: `Bearer ${login.sessionToken}` }),
    };
  }

  it("registers, creates a chat, sends and streams the message to the other user", async () => {
    const alice = await registered("alice");
    const bob = await registered("bob");
    const chats = createClient(ChatServiceDefinition, channel);
    const messages = createClient(MessageServiceDefinition, channel);
    const users = createClient(UserServiceDefinition, channel);
    expect((await users.getUser({ userId: alice.userId }, { metadata: bob.metadata })).user?.displayName).toBe("alice");
    const { chat } = await chats.createChat(
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [bob.userId] },
      { metadata: alice.metadata },
    );
    const chatId = chat?.chatId ?? "";
    const sent = await messages.sendMessage(
      { chatId, messageId: newMessageId(), payload: new TextEncoder().encode("over grpc") },
      { metadata: alice.metadata },
    );
    expect(sent.seq).toBe(1);

    const abort = new AbortController();
    const received: string[] = [];
    let synced = false;
    for await (const { push } of messages.subscribe({}, { metadata: bob.metadata, signal: abort.signal })) {
      if (push?.push?.$case === "message") received.push(new TextDecoder().decode(push.push.value.payload));
      if (push?.push?.$case === "syncComplete") {
        synced = true;
        // A live message after the sync arrives on the same stream.
        await messages.sendMessage(
          { chatId, messageId: newMessageId(), payload: new TextEncoder().encode("live") },
          { metadata: alice.metadata },
        );
      }
      if (received.length === 2) break;
    }
    abort.abort();
    expect(synced).toBe(true);
    expect(received).toEqual(["over grpc", "live"]);
    await messages.ack({ acks: [{ chatId, throughSeq: 2 }] }, { metadata: bob.metadata });
  });

  it("answers unauthenticated calls, forged tokens and bad requests with proper status codes", async () => {
    const chats = createClient(ChatServiceDefinition, channel);
    const messages = createClient(MessageServiceDefinition, channel);
    const statusOf = async (call: Promise<unknown>): Promise<Status | "ok"> =>
      call.then(
        () => "ok" as const,
        (error: unknown) => (error instanceof ClientError ? error.code : Status.UNKNOWN),
      );
    expect(await statusOf(chats.listChats({}))).toBe(Status.UNAUTHENTICATED);
    const forged = Metadata({ authorization: "Bearer d" + "a".repeat(26) + ".99999999999999.AAAA" });
    expect(await statusOf(chats.listChats({}, { metadata: forged }))).toBe(Status.UNAUTHENTICATED);

    const carol = await registered("carol");
    expect(
      await statusOf(
        messages.sendMessage(
          { chatId: "c" + "q".repeat(26), messageId: newMessageId(), payload: new Uint8Array([1]) },
          {
            metadata: carol.metadata,
          },
        ),
      ),
    ).toBe(Status.NOT_FOUND);
    expect(
      await statusOf(
        messages.sendMessage(
          { chatId: "bad", messageId: newMessageId(), payload: new Uint8Array([1]) },
          {
            metadata: carol.metadata,
          },
        ),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    expect(
      await statusOf(
        messages.sendMessage(
          { chatId: "c" + "q".repeat(26), messageId: newMessageId(), payload: new Uint8Array(300_000) },
          {
            metadata: carol.metadata,
          },
        ),
      ),
    ).toBe(Status.RESOURCE_EXHAUSTED);
    // Still serving.
    expect(await statusOf(chats.listChats({}, { metadata: carol.metadata }))).toBe("ok");
  });

  it("tells the token's lifetime at login: 24 hours", async () => {
    const dave = await registered("dave");
    expect(dave.sessionTtlMs).toBe(24 * 60 * 60 * 1000);
  });

  it("sends DEVICES_CHANGED with its device lists in grpc-status-details-bin, to a gRPC and a gRPC-web client", async () => {
    const erin = await registered("erin");
    const frank = await registered("frank");
    const { chat } = await createClient(ChatServiceDefinition, channel).createChat(
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [frank.userId] },
      { metadata: erin.metadata },
    );
    // A payload for a device that is no recipient: refused, the device named as stale.
    const stranger = newId("device");
    const send = () => ({
      chatId: chat?.chatId ?? "",
      messageId: newMessageId(),
      payload: new Uint8Array(0),
      devicePayloads: [{ deviceId: stranger, ciphertext: new Uint8Array([1]) }],
    });
    const expected = {
      code: ErrorCode.ERROR_CODE_DEVICES_CHANGED,
      devicesChanged: { missingDeviceIds: [], staleDeviceIds: [stranger] },
    };

    let grpcTrailer: Metadata | undefined;
    const grpcError = await createClient(MessageServiceDefinition, channel)
      .sendMessage(send(), { metadata: erin.metadata, onTrailer: (trailer) => (grpcTrailer = trailer) })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(grpcError).toBeInstanceOf(ClientError);
    expect((grpcError as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    const grpcDetail = decodeStatusDetails(grpcTrailer?.get(GRPC_STATUS_DETAILS_KEY) ?? new Uint8Array());
    expect(grpcDetail).toMatchObject(expected);

    let webTrailer: WebMetadata | undefined;
    const web = createWebClient(MessageServiceDefinition, createWebChannel(server.url, FetchTransport()));
    const webError = await web
      .sendMessage(send(), {
        metadata: WebMetadata({ authorization: erin.bearer }),
        onTrailer: (trailer) => (webTrailer = trailer),
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(webError).toBeInstanceOf(WebClientError);
    expect((webError as WebClientError).code).toBe(Status.FAILED_PRECONDITION);
    const webDetail = decodeStatusDetails(webTrailer?.get(GRPC_STATUS_DETAILS_KEY) ?? new Uint8Array());
    expect(webDetail).toMatchObject(expected);
  });

  it("checks the token before decoding: garbage without one is UNAUTHENTICATED, with one BAD_FRAME", async () => {
    const grace = await registered("grace");
    const garbage = Buffer.from([0x0f, 1, 2, 3]); // field 1, wire type 7: no message decodes from it
    const raw = (authorization: string | undefined) => {
      const client = new Client(server.grpcAddress, credentials.createInsecure());
      const metadata = new RawMetadata();
      if (authorization !== undefined) metadata.set("authorization", authorization);
      return new Promise<{ code: number; detail: ErrorDetail | undefined }>((resolve, reject) => {
        client.makeUnaryRequest(
          "/remessenger.v1.MessageService/SendMessage",
          (bytes: Buffer) => bytes,
          (bytes: Buffer) => bytes,
          garbage,
          metadata,
          (error) => {
            client.close();
            if (error === null) {
              reject(new Error("garbage was accepted"));
              return;
            }
            const [details] = error.metadata.get(GRPC_STATUS_DETAILS_KEY);
            resolve({
              code: error.code,
              detail: details instanceof Buffer ? decodeStatusDetails(details) : undefined,
            });
          },
        );
      });
    };
    const anonymous = await raw(undefined);
    expect(Status[anonymous.code]).toBe("UNAUTHENTICATED");
    expect(anonymous.detail?.code).toBe(ErrorCode.ERROR_CODE_UNAUTHENTICATED);
    const authed = await raw(grace.bearer);
    expect(Status[authed.code]).toBe("INVALID_ARGUMENT");
    expect(authed.detail?.code).toBe(ErrorCode.ERROR_CODE_BAD_FRAME);

    // gRPC-web: the token is checked before the body is read, whatever the bytes.
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
    const web = await fetch(`${server.url}/remessenger.v1.MessageService/SendMessage`, {
      method: "POST",
      body: new Uint8Array(envelope),
      headers: { "content-type": "application/grpc-web+proto" },
    });
    const text = Buffer.from(await web.arrayBuffer()).toString("latin1");
    expect(web.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/i.exec(text)?.[1]).toBe(
      String(Status.UNAUTHENTICATED),
    );
  });

  it("creates a direct chat from exactly one other user, and refuses any other list", async () => {
    const heidi = await registered("heidi");
    const ivan = await registered("ivan");
    const chats = createClient(ChatServiceDefinition, channel);
    const create = (memberUserIds: string[]) =>
      chats.createChat({ kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds }, { metadata: heidi.metadata });
    const statusOf = (call: Promise<unknown>) =>
      call.then(
        () => "ok",
        (error: unknown) => (error instanceof ClientError ? Status[error.code] : String(error)),
      );
    expect({
      peerAndSelf: await statusOf(create([ivan.userId, heidi.userId])),
      selfOnly: await statusOf(create([heidi.userId])),
      none: await statusOf(create([])),
      peerTwice: await statusOf(create([ivan.userId, ivan.userId])),
    }).toEqual({
      peerAndSelf: "INVALID_ARGUMENT",
      selfOnly: "INVALID_ARGUMENT",
      none: "INVALID_ARGUMENT",
      peerTwice: "INVALID_ARGUMENT",
    });
    const { chat, created } = await create([ivan.userId]);
    expect(created).toBe(true);
    expect([...(chat?.memberUserIds ?? [])].sort()).toEqual([heidi.userId, ivan.userId].sort());
  });
});
