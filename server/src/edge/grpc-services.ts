/**
 * The services of proto/remessenger/v1/service.proto as one table of
 * implementations over the Messenger, served twice: over gRPC (grpc-edge.ts,
 * nice-grpc) and over gRPC-web (grpc-web-edge.ts, Connect). A method written
 * here is served by both, with the same authentication and the same errors.
 *
 * Authenticated services take `authorization: Bearer <session token>` (from
 * Register/Login); the others are open.
 */
import type { TsProtoServiceDefinition } from "nice-grpc";
import {
  RemessengerError,
  AuthServiceDefinition,
  ChatServiceDefinition,
  ErrorCode,
  MessageServiceDefinition,
  PreKeyServiceDefinition,
  type ServerPush,
  type SubscribeResponse,
  UserServiceDefinition,
} from "@remessenger/protocol";
import type { AuthedDevice, Messenger } from "../core/messenger.ts";

/** Pushes buffered per Subscribe stream before the pump waits for the reader. */
const STREAM_HIGH_WATER = 256;
const STREAM_LOW_WATER = 64;

/** What a method gets besides its request: the device (authenticated services) and the call's end. */
export interface ServiceCall {
  device: AuthedDevice;
  signal: AbortSignal;
}

type Method = (request: never, call: ServiceCall) => Promise<unknown> | AsyncIterable<unknown>;

export interface ServiceEntry {
  definition: TsProtoServiceDefinition;
  isAuthed: boolean;
  /** By the definition's method keys (camelCase). */
  methods: Record<string, Method>;
}

/** Open Subscribe streams per edge, for metrics. */
export interface StreamCounter {
  open: number;
}

export function serviceTable(messenger: Messenger, streams: StreamCounter): ServiceEntry[] {
  return implementedServices(messenger, streams).map(withEveryMethod);
}

/**
 * A method the proto has and the table lacks (a new RPC not written yet)
 * answers UNIMPLEMENTED instead of keeping the server from starting.
 */
function withEveryMethod(entry: ServiceEntry): ServiceEntry {
  const methods: Record<string, Method> = { ...entry.methods };
  for (const [key, method] of Object.entries(entry.definition.methods)) {
    methods[key] ??= () =>
      Promise.reject(
        new RemessengerError(
          ErrorCode.ERROR_CODE_UNIMPLEMENTED,
          `${entry.definition.fullName}/${method.name} is not served yet`,
        ),
      );
  }
  return { ...entry, methods };
}

function implementedServices(messenger: Messenger, streams: StreamCounter): ServiceEntry[] {
  return [
    {
      definition: AuthServiceDefinition,
      isAuthed: false,
      methods: {
        getChallenge: () => Promise.resolve(messenger.newChallenge()),
        register: async (request: Parameters<Messenger["register"]>[0]) => (await messenger.register(request)).response,
        login: async (request: Parameters<Messenger["login"]>[0]) => (await messenger.login(request)).response,
        linkDevice: async (request: Parameters<Messenger["linkDevice"]>[0]) =>
          (await messenger.linkDevice(request)).response,
      },
    },
    {
      definition: UserServiceDefinition,
      isAuthed: true,
      methods: {
        getUser: (request: Parameters<Messenger["getUser"]>[1], { device }) => messenger.getUser(device, request),
      },
    },
    {
      definition: PreKeyServiceDefinition,
      isAuthed: true,
      methods: {
        publishPreKeys: async (request: Parameters<Messenger["deviceKeys"]["publish"]>[1], { device }) => ({
          stock: await messenger.deviceKeys.publish(device.deviceId, request),
        }),
        getPreKeyBundles: (request: Parameters<Messenger["deviceKeys"]["takeBundles"]>[0]) =>
          messenger.deviceKeys.takeBundles(request),
      },
    },
    {
      definition: ChatServiceDefinition,
      isAuthed: true,
      methods: {
        createChat: (request: Parameters<Messenger["createChat"]>[1], { device }) =>
          messenger.createChat(device, request),
        getChat: (request: Parameters<Messenger["getChat"]>[1], { device }) => messenger.getChat(device, request),
        listChats: (_request: unknown, { device }) => messenger.listChats(device),
        getGroupOperations: (request: Parameters<Messenger["getGroupOperations"]>[1], { device }) =>
          messenger.getGroupOperations(device, request),
      },
    },
    {
      definition: MessageServiceDefinition,
      isAuthed: true,
      methods: {
        sendMessage: (request: Parameters<Messenger["sendMessage"]>[1], { device }) =>
          messenger.sendMessage(device, request),
        ack: async (request: Parameters<Messenger["ack"]>[1], { device }) => {
          await messenger.ack(device, request);
          return {};
        },
        ping: (request: Parameters<Messenger["ping"]>[0]) => Promise.resolve(messenger.ping(request)),
        subscribe: (_request: unknown, { device, signal }) => subscribeStream(messenger, device, signal, streams),
      },
    },
  ];
}

/** The device an `authorization: Bearer <token>` header stands for, or UNAUTHENTICATED. */
export async function authenticateBearer(messenger: Messenger, header: string | undefined): Promise<AuthedDevice> {
  const token = /^Bearer (.+)$/.exec(header ?? "")?.[1];
  if (token === undefined) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "missing authorization: Bearer <token>");
  }
  return messenger.authenticate(token);
}

/**
 * Bridges the pump (push) to the stream (pull): a bounded buffer the
 * generator drains; the pump pauses when it is full and resumes below low water.
 */
async function* subscribeStream(
  messenger: Messenger,
  device: AuthedDevice,
  signal: AbortSignal,
  streams: StreamCounter,
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
