/**
 * gRPC for the ecosystem, on three nodes over a real Redis Cluster:
 * - a client that knows no .proto file lists the services by reflection,
 *   learns a method's types from it and calls it (what grpcurl does);
 * - the standard health service answers SERVING;
 * - a browser-style gRPC-web client (nice-grpc-web over fetch) registers,
 *   subscribes by server streaming on one node and receives a message sent
 *   over gRPC on another;
 * - bad input on both paths (no or wrong token, oversized messages, a wrong
 *   chat, bytes that are no request at all) gets its gRPC status, and the
 *   nodes keep serving.
 */
import { sign } from "node:crypto";
import { Client, Metadata as RawMetadata, credentials } from "@grpc/grpc-js";
import {
  type Channel,
  ClientError,
  Metadata,
  Status,
  createChannel as createGrpcChannel,
  createClient as createGrpcClient,
} from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import {
  ClientError as WebClientError,
  FetchTransport,
  Metadata as WebMetadata,
  createChannel as createWebChannel,
  createClient as createWebClient,
} from "nice-grpc-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  registerProof,
  newId,
  newMessageId,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  AuthServiceDefinition,
  ChatKind,
  ChatServiceDefinition,
  MessageServiceDefinition,
  type SubscribeResponse,
} from "@remessenger/protocol";
import { newDeviceKey } from "../../scripts/harness/frame-driver.ts";
import { callUnary, listServices, registryFor } from "../../scripts/harness/reflection-client.ts";
import { type ClusterUnderTest, startCluster } from "./cluster-fixture.ts";

let cluster: ClusterUnderTest;
const channels: Channel[] = [];

beforeAll(async () => {
  cluster = await startCluster();
});

afterAll(async () => {
  for (const channel of channels) channel.close();
  await cluster.stop();
});

function grpcChannel(nodeIndex: number): Channel {
  const channel = createGrpcChannel(cluster.nodes[nodeIndex]?.grpcAddress ?? "");
  channels.push(channel);
  return channel;
}

function webChannel(nodeIndex: number) {
  return createWebChannel(cluster.nodes[nodeIndex]?.url ?? "", FetchTransport());
}

describe("gRPC with reflection and health, on three nodes", () => {
  it("lists the services and calls a method knowing nothing but what reflection tells", async () => {
    const address = cluster.nodes[0]?.grpcAddress ?? "";
    expect(await listServices(address)).toEqual(
      expect.arrayContaining([
        "remessenger.v1.AuthService",
        "remessenger.v1.ChatService",
        "remessenger.v1.MessageService",
        "grpc.health.v1.Health",
      ]),
    );
    // The method's types come from the file reflection serves and every file it imports.
    const json = (await callUnary(address, "remessenger.v1.AuthService/GetChallenge", {})) as {
      nonce?: string;
      expiresAtMs?: string;
    };
    expect(Buffer.from(json.nonce ?? "", "base64")).toHaveLength(32);
    expect(Number(json.expiresAtMs)).toBeGreaterThan(Date.now());
    // The health service is described too (its package ships no descriptor; the server adds it).
    const health = await registryFor(address, "grpc.health.v1.Health");
    expect(health.getService("grpc.health.v1.Health")?.methods.map((m) => m.name)).toEqual(["Check", "Watch"]);
  });

  it("answers SERVING on the standard health service of every node", async () => {
    for (const index of [0, 1, 2]) {
      const health = createGrpcClient(HealthDefinition, grpcChannel(index));
      expect((await health.check({ service: "" })).status).toBe(1); // SERVING
    }
  });
});

/** Registers over gRPC-web (challenge, signed register) and returns the bearer metadata. */
async function registerOverWeb(nodeIndex: number, name: string) {
  const auth = createWebClient(AuthServiceDefinition, webChannel(nodeIndex));
  const key = newDeviceKey();
  const { nonce } = await auth.getChallenge({});
  const result = await auth.register({
    displayName: name,
    identityKey: key.publicKey,
    nonce,
    signature: sign(null, registerProof(nonce, key.publicKey, name), key.privateKey),
  });
  return { ...result, bearer: `Bearer ${result.sessionToken}` };
}

describe("gRPC-web, served by the nodes themselves", () => {
  it("lets a browser-style client register, subscribe, and receive a message sent over gRPC to another node", async () => {
    const web = await registerOverWeb(0, "web-alice");
    const grpcBob = await registerOverWeb(2, "grpc-bob");
    const chats = createGrpcClient(ChatServiceDefinition, grpcChannel(1));
    const bobMetadata = Metadata({ authorization: grpcBob.bearer });
    const { chat } = await chats.createChat(
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [web.userId] },
      { metadata: bobMetadata },
    );
    const chatId = chat?.chatId ?? "";

    const messages = createWebClient(MessageServiceDefinition, webChannel(0));
    const abort = new AbortController();
    const subscription = messages.subscribe(
      {},
      { metadata: WebMetadata({ authorization: web.bearer }), signal: abort.signal },
    );
    const stream = subscription[Symbol.asyncIterator]();
    const next = async (): Promise<SubscribeResponse> => {
      const result = await stream.next();
      if (result.done === true) throw new Error("stream ended");
      return result.value;
    };
    expect((await next()).push?.push?.$case).toBe("syncComplete");

    const sent = await createGrpcClient(MessageServiceDefinition, grpcChannel(1)).sendMessage(
      { chatId, messageId: newMessageId(), payload: new TextEncoder().encode("over the web") },
      { metadata: bobMetadata },
    );
    const pushed = (await next()).push?.push;
    expect(pushed?.$case).toBe("message");
    if (pushed?.$case !== "message") throw new Error("not a message");
    expect(pushed.value.seq).toBe(sent.seq);
    expect(new TextDecoder().decode(pushed.value.payload)).toBe("over the web");
    abort.abort();
  });
});

/** Health SERVING on every node, and a node-crossing send on each path still answered. */
async function expectEveryNodeServing(): Promise<void> {
  for (const index of [0, 1, 2]) {
    expect((await createGrpcClient(HealthDefinition, grpcChannel(index)).check({ service: "" })).status).toBe(1);
    expect((await fetch(`${cluster.nodes[index]?.url ?? ""}/readyz`)).status).toBe(200);
  }
  const a = await registerOverWeb(0, "after-a");
  const b = await registerOverWeb(1, "after-b");
  const { chat } = await createGrpcClient(ChatServiceDefinition, grpcChannel(2)).createChat(
    { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [b.userId] },
    { metadata: Metadata({ authorization: a.bearer }) },
  );
  const request = () => ({ chatId: chat?.chatId ?? "", messageId: newMessageId(), payload: new Uint8Array(10) });
  const viaGrpc = createGrpcClient(MessageServiceDefinition, grpcChannel(1));
  const viaWeb = createWebClient(MessageServiceDefinition, webChannel(2));
  expect((await viaGrpc.sendMessage(request(), { metadata: Metadata({ authorization: a.bearer }) })).seq).toBe(1);
  expect((await viaWeb.sendMessage(request(), { metadata: WebMetadata({ authorization: b.bearer }) })).seq).toBe(2);
}

/** A unary gRPC call carrying `body` as the request bytes, as they are: its status. */
function rawGrpcStatus(nodeIndex: number, path: string, body: Buffer, authorization: string): Promise<number> {
  const raw = new Client(cluster.nodes[nodeIndex]?.grpcAddress ?? "", credentials.createInsecure());
  const metadata = new RawMetadata();
  metadata.set("authorization", authorization);
  return new Promise<number>((resolve, reject) => {
    raw.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      metadata,
      (error) => {
        raw.close();
        if (error === null) reject(new Error(`${path} succeeded`));
        else resolve(error.code);
      },
    );
  });
}

/** A gRPC-web POST of raw bytes: the HTTP status and the grpc-status (header, or the trailer frame in the body). */
async function rawWeb(
  nodeIndex: number,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ http: number; status: number | undefined }> {
  const response = await fetch(`${cluster.nodes[nodeIndex]?.url ?? ""}${path}`, {
    method: "POST",
    body: new Uint8Array(body),
    headers: { "content-type": "application/grpc-web+proto", ...headers },
  });
  const text = Buffer.from(await response.arrayBuffer()).toString("latin1");
  const status = response.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/i.exec(text)?.[1];
  return { http: response.status, status: status === undefined ? undefined : Number(status) };
}

async function webStatus(call: () => Promise<unknown>): Promise<Status> {
  try {
    await call();
  } catch (error) {
    if (error instanceof WebClientError) return error.code;
    throw error;
  }
  throw new Error("the call succeeded");
}

async function grpcStatus(call: () => Promise<unknown>): Promise<Status> {
  try {
    await call();
  } catch (error) {
    if (error instanceof ClientError) return error.code;
    throw error;
  }
  throw new Error("the call succeeded");
}

describe("bad input on the gRPC and gRPC-web paths", () => {
  it("answers each with its status and keeps every node serving", async () => {
    const user = await registerOverWeb(1, "careful");
    const other = await registerOverWeb(2, "other");
    const good = { authorization: user.bearer };
    const grpc = createGrpcClient(MessageServiceDefinition, grpcChannel(1));
    const web = createWebClient(MessageServiceDefinition, webChannel(1));
    const send = (chatId: string, bytes: number) => ({
      chatId,
      messageId: newMessageId(),
      payload: new Uint8Array(bytes).fill(7),
    });
    const { chat } = await createGrpcClient(ChatServiceDefinition, grpcChannel(1)).createChat(
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [other.userId] },
      { metadata: Metadata(good) },
    );
    const chatId = chat?.chatId ?? "";
    const strangerChat = newId("chat");

    const cases: Array<[string, Status, () => Promise<unknown>]> = [];
    for (const [path, client, meta] of [
      ["grpc", grpc, (m: Record<string, string>) => Metadata(m)],
      ["web", web, (m: Record<string, string>) => WebMetadata(m)],
    ] as const) {
      const call = (request: ReturnType<typeof send>, headers: Record<string, string>) =>
        client.sendMessage(request, { metadata: meta(headers) });
      cases.push(
        [`${path}: no token`, Status.UNAUTHENTICATED, () => call(send(chatId, 10), {})],
        [
          `${path}: forged token`,
          Status.UNAUTHENTICATED,
          () => call(send(chatId, 10), { authorization: "Bearer x.y" }),
        ],
        [
          `${path}: message over the limit`,
          Status.RESOURCE_EXHAUSTED,
          () => call(send(chatId, MAX_MESSAGE_BYTES + 1), good),
        ],
        [
          `${path}: frame over the limit`,
          Status.RESOURCE_EXHAUSTED,
          () => call(send(chatId, MAX_FRAME_BYTES + 10), good),
        ],
        [`${path}: a chat that is not ours`, Status.NOT_FOUND, () => call(send(strangerChat, 10), good)],
        [`${path}: not a chat id`, Status.INVALID_ARGUMENT, () => call(send("../etc", 10), good)],
      );
    }
    for (const [what, expected, run] of cases) {
      const status = what.startsWith("grpc") ? await grpcStatus(run) : await webStatus(run);
      expect({ what, status: Status[status] }).toEqual({ what, status: Status[expected] });
    }

    // Every node still serves: health, and a good send on both paths.
    for (const index of [0, 1, 2]) {
      expect((await createGrpcClient(HealthDefinition, grpcChannel(index)).check({ service: "" })).status).toBe(1);
    }
    expect((await grpc.sendMessage(send(chatId, 10), { metadata: Metadata(good) })).seq).toBe(1);
    expect((await web.sendMessage(send(chatId, 10), { metadata: WebMetadata(good) })).seq).toBe(2);
  });

  it("refuses another pair's chat and unauthenticated subscriptions on both paths", async () => {
    const user = await registerOverWeb(0, "nosy");
    const other = await registerOverWeb(1, "owner-a");
    const third = await registerOverWeb(2, "owner-b");
    // A chat that exists, between two other users, so it has an owner node somewhere.
    const { chat } = await createGrpcClient(ChatServiceDefinition, grpcChannel(1)).createChat(
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [third.userId] },
      { metadata: Metadata({ authorization: other.bearer }) },
    );
    const theirs = chat?.chatId ?? "";
    const good = { authorization: user.bearer };
    const grpcMessages = createGrpcClient(MessageServiceDefinition, grpcChannel(0));
    const webMessages = createWebClient(MessageServiceDefinition, webChannel(0));
    const grpcChats = createGrpcClient(ChatServiceDefinition, grpcChannel(0));
    const webChats = createWebClient(ChatServiceDefinition, webChannel(0));
    const request = () => ({ chatId: theirs, messageId: newMessageId(), payload: new Uint8Array(10) });
    const acks = { acks: [{ chatId: theirs, throughSeq: 1 }] };
    const drain = async (stream: AsyncIterable<unknown>): Promise<void> => {
      const first = await stream[Symbol.asyncIterator]().next();
      if (first.done !== true) throw new Error("an unauthenticated subscription got a push");
    };

    const grpcCases: Array<[string, Status, () => Promise<unknown>]> = [
      ["send", Status.NOT_FOUND, () => grpcMessages.sendMessage(request(), { metadata: Metadata(good) })],
      ["ack", Status.NOT_FOUND, () => grpcMessages.ack(acks, { metadata: Metadata(good) })],
      ["get chat", Status.NOT_FOUND, () => grpcChats.getChat({ chatId: theirs }, { metadata: Metadata(good) })],
      ["subscribe, no token", Status.UNAUTHENTICATED, () => drain(grpcMessages.subscribe({}))],
      [
        "subscribe, forged token",
        Status.UNAUTHENTICATED,
        () => drain(grpcMessages.subscribe({}, { metadata: Metadata({ authorization: "Bearer x.y" }) })),
      ],
    ];
    const webCases: Array<[string, Status, () => Promise<unknown>]> = [
      ["send", Status.NOT_FOUND, () => webMessages.sendMessage(request(), { metadata: WebMetadata(good) })],
      ["ack", Status.NOT_FOUND, () => webMessages.ack(acks, { metadata: WebMetadata(good) })],
      ["get chat", Status.NOT_FOUND, () => webChats.getChat({ chatId: theirs }, { metadata: WebMetadata(good) })],
      ["subscribe, no token", Status.UNAUTHENTICATED, () => drain(webMessages.subscribe({}))],
      [
        "subscribe, forged token",
        Status.UNAUTHENTICATED,
        () => drain(webMessages.subscribe({}, { metadata: WebMetadata({ authorization: "Bearer x.y" }) })),
      ],
    ];
    for (const [what, expected, run] of grpcCases) {
      expect({ what, status: Status[await grpcStatus(run)] }).toEqual({ what, status: Status[expected] });
    }
    for (const [what, expected, run] of webCases) {
      expect({ what, status: Status[await webStatus(run)] }).toEqual({ what, status: Status[expected] });
    }
    await expectEveryNodeServing();
  });

  it("answers bytes that are no request, and bodies over the limit, with a status and no crash", async () => {
    const user = await registerOverWeb(2, "raw");
    const send = "/remessenger.v1.MessageService/SendMessage";
    const notProtobuf = Buffer.from([0x0f, 1, 2, 3]); // field 1, wire type 7: no message decodes from it
    const huge = Buffer.alloc(8 * 1024 * 1024, 7);

    // gRPC, as a client with a broken codec (or none) would call.
    const grpcCases: Array<[string, Status, string, Buffer]> = [
      ["not protobuf", Status.INVALID_ARGUMENT, send, notProtobuf], // BAD_FRAME, decoded after the token was checked
      ["8 MiB request", Status.RESOURCE_EXHAUSTED, send, huge],
      ["unknown method", Status.UNIMPLEMENTED, "/remessenger.v1.MessageService/Nope", Buffer.alloc(0)],
      ["unknown service", Status.UNIMPLEMENTED, "/remessenger.v9.Nothing/Nope", Buffer.alloc(0)],
    ];
    for (const [what, expected, path, body] of grpcCases) {
      const status = await rawGrpcStatus(2, path, body, user.bearer);
      expect({ what, status: Status[status] }).toEqual({ what, status: Status[expected] });
    }

    // gRPC-web, as raw POSTs: each message is a 5-byte envelope (flag, big-endian length) and its bytes.
    const envelope = (bytes: Uint8Array, length = bytes.length): Buffer => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(length, 1);
      return Buffer.concat([head, bytes]);
    };
    const webCases: Array<[string, Status, Buffer]> = [
      ["a cut envelope", Status.INVALID_ARGUMENT, Buffer.from([0, 0, 0])],
      // Connect parses the body before any handler runs and calls a parse failure INTERNAL.
      ["not protobuf", Status.INTERNAL, envelope(notProtobuf)],
      ["a length of 4 GiB", Status.RESOURCE_EXHAUSTED, envelope(Buffer.from([1, 2]), 0xffff_ffff)],
      ["8 MiB request", Status.RESOURCE_EXHAUSTED, envelope(huge)],
    ];
    for (const [what, expected, body] of webCases) {
      const answer = await rawWeb(2, send, body, { authorization: user.bearer });
      expect({ what, http: answer.http, status: answer.status }).toEqual({ what, http: 200, status: expected });
    }
    // Not gRPC-web at all: plain HTTP answers (404 maps to UNIMPLEMENTED in gRPC's HTTP table).
    expect((await rawWeb(2, "/remessenger.v1.MessageService/Nope", envelope(Buffer.alloc(0)))).http).toBe(404);
    expect((await rawWeb(2, send, envelope(Buffer.alloc(0)), { "content-type": "text/plain" })).http).toBe(415);

    await expectEveryNodeServing();
    expect(cluster.nodes.flatMap((node) => node.logs.filter((line) => /"level":60/.test(line)))).toEqual([]);
  });
});
