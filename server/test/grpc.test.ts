import { sign } from "node:crypto";
import { Metadata, Status, createChannel, createClient, type Channel, ClientError } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
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

  async function registered(name: string): Promise<{ userId: string; deviceId: string; metadata: Metadata }> {
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
    return { ...result, metadata: Metadata({ authorization: `Bearer ${login.sessionToken}` }) };
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
});
