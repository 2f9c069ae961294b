/**
 * The gRPC edge: the services of proto/remessenger/v1/service.proto over
 * @grpc/grpc-js (nice-grpc), for backend teams and load tools. The same
 * Messenger serves them as the frame pipes. Authenticated calls carry
 * `authorization: Bearer <session token>` from Register/Login.
 */
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import { type CallContext, type Server, ServerError, type ServerMiddlewareCall, createServer } from "nice-grpc";
import type { Logger } from "pino";
import { RemessengerError } from "../../../client/core/src/wire/errors.ts";
import { MAX_FRAME_BYTES } from "../../../client/core/src/wire/limits.ts";
import {
  AuthServiceDefinition,
  ChatServiceDefinition,
  ErrorCode,
  MessageServiceDefinition,
  PreKeyServiceDefinition,
  type ServerPush,
  type SubscribeResponse,
  UserServiceDefinition,
} from "../../../client/core/src/wire/proto.ts";
import type { AuthedDevice, Messenger } from "../core/messenger.ts";
import { isInternal, toErrorDetail, toGrpcStatus } from "./to-status.ts";

/** Pushes buffered per Subscribe stream before the pump waits for the reader. */
const STREAM_HIGH_WATER = 256;
const STREAM_LOW_WATER = 64;

export interface GrpcEdgeOptions {
  messenger: Messenger;
  log: Logger;
  tls?: { certFile: string; keyFile: string };
}

export class GrpcEdge {
  private readonly server: Server;
  private readonly options: GrpcEdgeOptions;
  private readonly streams = { open: 0 };

  constructor(options: GrpcEdgeOptions) {
    this.options = options;
    const { messenger, log } = options;
    const server = createServer({
      "grpc.max_receive_message_length": MAX_FRAME_BYTES,
      "grpc.max_send_message_length": MAX_FRAME_BYTES,
    }).use(async function* errorsToStatus<Req, Res>(call: ServerMiddlewareCall<Req, Res>, context: CallContext) {
      try {
        return yield* call.next(call.request, context);
      } catch (error) {
        if (error instanceof ServerError) throw error;
        if (isInternal(error)) log.error({ err: error, method: call.method.path }, "grpc call failed");
        const detail = toErrorDetail(error);
        throw new ServerError(toGrpcStatus(detail.code), detail.message);
      }
    });

    server.add(AuthServiceDefinition, {
      getChallenge: () => Promise.resolve(messenger.newChallenge()),
      register: async (request) => (await messenger.register(request)).response,
      login: async (request) => (await messenger.login(request)).response,
      linkDevice: async (request) => (await messenger.linkDevice(request)).response,
    });

    server.with(authedMiddleware(messenger)).add(UserServiceDefinition, {
      getUser: (request, { device }) => messenger.getUser(device, request),
    });
    server.with(authedMiddleware(messenger)).add(PreKeyServiceDefinition, {
      publishPreKeys: async (request, { device }) => ({
        stock: await messenger.deviceKeys.publish(device.deviceId, request),
      }),
      getPreKeyBundles: (request) => messenger.deviceKeys.takeBundles(request),
    });
    server.with(authedMiddleware(messenger)).add(ChatServiceDefinition, {
      createChat: (request, { device }) => messenger.createChat(device, request),
      getChat: (request, { device }) => messenger.getChat(device, request),
      listChats: (_request, { device }) => messenger.listChats(device),
    });
    server.with(authedMiddleware(messenger)).add(MessageServiceDefinition, {
      sendMessage: (request, { device }) => messenger.sendMessage(device, request),
      ack: async (request, { device }) => {
        await messenger.ack(device, request);
        return {};
      },
      ping: (request) => Promise.resolve(messenger.ping(request)),
      subscribe: (_request, { device, signal }) => subscribeStream(messenger, device, signal, this.streams),
    });
    this.server = server;
  }

  /** Open Subscribe streams, for metrics. */
  get streamCount(): number {
    return this.streams.open;
  }

  async listen(address: string): Promise<number> {
    const { tls } = this.options;
    const credentials = tls
      ? ServerCredentials.createSsl(null, [
          { cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) },
        ])
      : ServerCredentials.createInsecure();
    return this.server.listen(address, credentials);
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
    await Promise.resolve();
  }
}

/** Turns `authorization: Bearer <token>` into the call's `device`, or UNAUTHENTICATED. */
function authedMiddleware(messenger: Messenger) {
  return async function* bearerAuth<Req, Res>(
    call: ServerMiddlewareCall<Req, Res, { device: AuthedDevice }>,
    context: CallContext,
  ) {
    const header = context.metadata.get("authorization") ?? "";
    const token = /^Bearer (.+)$/.exec(header)?.[1];
    if (token === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "missing authorization: Bearer <token>");
    }
    const device = await messenger.authenticate(token);
    return yield* call.next(call.request, { ...context, device });
  };
}

/**
 * Bridges the pump (push) to the stream (pull): a bounded buffer the
 * generator drains; the pump pauses when it is full and resumes below low water.
 */
async function* subscribeStream(
  messenger: Messenger,
  device: AuthedDevice,
  signal: AbortSignal,
  streams: { open: number },
): AsyncGenerator<SubscribeResponse> {
  streams.open += 1;
  const buffer: ServerPush[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  const subscription = messenger.subscribe(device, {
    push: (push) => {
      buffer.push(push);
      wake?.();
    },
    isWritable: () => buffer.length < STREAM_HIGH_WATER,
  });
  subscription.synced.catch((error: unknown) => {
    failure = error instanceof Error ? error : new Error("sync failed");
    wake?.();
  });
  const onAbort = (): void => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    while (!signal.aborted) {
      const push = buffer.shift();
      if (push !== undefined) {
        if (buffer.length === STREAM_LOW_WATER) subscription.pump.onWritable();
        yield { push };
        continue;
      }
      if (failure !== undefined) throw failure;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    streams.open -= 1;
    signal.removeEventListener("abort", onAbort);
    subscription.close();
  }
}
