/**
 * gRPC for the ecosystem, on three nodes over a real Redis Cluster:
 * - a client that knows no .proto file lists the services by reflection,
 *   learns a method's types from it and calls it (what grpcurl does);
 * - the standard health service answers SERVING;
 * - a browser-style gRPC-web client (nice-grpc-web over fetch) registers,
 *   subscribes by server streaming on one node and receives a message sent
 *   over gRPC on another;
 * - bad input on both paths (no or wrong token, oversized messages, a wrong
 *   chat) gets its gRPC status, and the nodes keep serving.
 */
import { sign } from "node:crypto";
import { Client, credentials } from "@grpc/grpc-js";
import { create, createFileRegistry, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import {
  type Channel,
  ClientError,
  Metadata,
  Status,
  createChannel as createGrpcChannel,
  createClient as createGrpcClient,
} from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { ServerReflectionService } from "nice-grpc-server-reflection";
import reflectionPb from "nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js";
import {
  ClientError as WebClientError,
  FetchTransport,
  Metadata as WebMetadata,
  createChannel as createWebChannel,
  createClient as createWebClient,
} from "nice-grpc-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerProof } from "../../client/core/src/wire/auth-proof.ts";
import { newId, newMessageId } from "../../client/core/src/wire/ids.ts";
import { MAX_FRAME_BYTES, MAX_MESSAGE_BYTES } from "../../client/core/src/wire/limits.ts";
import {
  AuthServiceDefinition,
  ChatKind,
  ChatServiceDefinition,
  MessageServiceDefinition,
  type SubscribeResponse,
} from "../../client/core/src/wire/proto.ts";
import { newDeviceKey } from "../../scripts/harness/frame-driver.ts";
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

/** The reflection stream: one request, one response. */
async function reflect(channel: Channel, fill: (request: reflectionPb.ServerReflectionRequest) => void) {
  const client = createGrpcClient(ServerReflectionService, channel);
  const request = new reflectionPb.ServerReflectionRequest();
  fill(request);
  const requests = (async function* () {
    yield await Promise.resolve(request);
  })();
  for await (const response of client.serverReflectionInfo(requests)) return response;
  throw new Error("no reflection response");
}

describe("gRPC with reflection and health, on three nodes", () => {
  it("lists the services and calls a method knowing nothing but what reflection tells", async () => {
    const channel = grpcChannel(0);
    const listed = await reflect(channel, (request) => request.setListServices(""));
    const names = listed
      .getListServicesResponse()
      ?.getServiceList()
      .map((service) => service.getName());
    expect(names).toEqual(
      expect.arrayContaining([
        "remessenger.v1.AuthService",
        "remessenger.v1.ChatService",
        "remessenger.v1.MessageService",
        "grpc.health.v1.Health",
      ]),
    );

    // The file defining AuthService, then (as grpcurl does) every file it imports, by name.
    const fetched = new Map<string, ReturnType<typeof fromBinary<typeof FileDescriptorProtoSchema>>>();
    const take = (response: reflectionPb.ServerReflectionResponse): void => {
      for (const bytes of response.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? []) {
        const file = fromBinary(FileDescriptorProtoSchema, bytes);
        fetched.set(file.name, file);
      }
    };
    take(await reflect(channel, (request) => request.setFileContainingSymbol("remessenger.v1.AuthService")));
    for (let round = 0; round < 10; round += 1) {
      const missing = [...fetched.values()].flatMap((file) => file.dependency).filter((name) => !fetched.has(name));
      if (missing.length === 0) break;
      for (const name of missing) take(await reflect(channel, (request) => request.setFileByFilename(name)));
    }
    // Dependencies first, as a descriptor set lists them.
    const ordered: Array<ReturnType<typeof fromBinary<typeof FileDescriptorProtoSchema>>> = [];
    const visit = (name: string): void => {
      const file = fetched.get(name);
      if (file === undefined || ordered.includes(file)) return;
      for (const dependency of file.dependency) visit(dependency);
      ordered.push(file);
    };
    for (const name of fetched.keys()) visit(name);
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
    const method = registry.getService("remessenger.v1.AuthService")?.methods.find((m) => m.name === "GetChallenge");
    if (method === undefined) throw new Error("reflection did not describe GetChallenge");

    const address = cluster.nodes[0]?.grpcAddress ?? "";
    const raw = new Client(address, credentials.createInsecure());
    const answer = await new Promise<unknown>((resolve, reject) => {
      raw.makeUnaryRequest(
        "/remessenger.v1.AuthService/GetChallenge",
        (message: unknown) => Buffer.from(toBinary(method.input, message as never)),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        create(method.input),
        (error, value) => (error ? reject(error) : resolve(value)),
      );
    });
    raw.close();
    // The health service is described too (its package ships no descriptor; the server adds it).
    const health = await reflect(channel, (request) => request.setFileContainingSymbol("grpc.health.v1.Health"));
    const healthFiles = (health.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? []).map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    const healthRegistry = createFileRegistry(create(FileDescriptorSetSchema, { file: healthFiles }));
    expect(healthRegistry.getService("grpc.health.v1.Health")?.methods.map((m) => m.name)).toEqual(["Check", "Watch"]);
    const json = toJson(method.output, answer as never) as { nonce?: string; expiresAtMs?: string };
    expect(Buffer.from(json.nonce ?? "", "base64")).toHaveLength(32);
    expect(Number(json.expiresAtMs)).toBeGreaterThan(Date.now());
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

describe("bad input on the gRPC and gRPC-web paths", () => {
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
});
