/**
 * gRPC-web, served by the server itself on the main listener (no Envoy or
 * grpcwebproxy process): browsers and other gRPC-web clients (nice-grpc-web,
 * grpc-web, Connect) reach the same services as gRPC, with server streaming
 * for Subscribe. @connectrpc/connect-node speaks the protocol; the methods
 * are the table in grpc-services.ts.
 *
 * - Connect reads and writes messages by descriptor (service-descriptors.ts);
 *   each call crosses to the ts-proto types of the table by their bytes, so
 *   both edges share one implementation and one set of errors.
 * - Requests are POSTs to /<package>.<Service>/<Method>; CORS is open (the
 *   bearer token, not a cookie, is the credential), so a page on another
 *   origin may call it.
 * - Messages above MAX_FRAME_BYTES are refused (RESOURCE_EXHAUSTED), errors
 *   carry the gRPC status of the RemessengerError code and the ErrorDetail in
 *   the `grpc-status-details-bin` trailer (Connect packs it into a
 *   google.rpc.Status, as the gRPC edge does), unknown errors are INTERNAL
 *   with the details only in the log.
 * - The bearer token is checked in Connect's request gate, before the body is
 *   read or parsed: a request without a valid token is UNAUTHENTICATED
 *   whatever its bytes.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  cors,
  createContextKey,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { ErrorDetail, MAX_FRAME_BYTES } from "@remessenger/protocol";
import type { AuthedDevice, Messenger } from "../core/messenger.ts";
import { type ServiceCall, type ServiceEntry, authenticateBearer, serviceTable } from "./grpc-services.ts";
import { serviceDescriptors } from "./service-descriptors.ts";
import { isInternal, toGrpcFailure } from "./to-status.ts";

export interface GrpcWebEdgeOptions {
  messenger: Messenger;
  log: Logger;
}

const CORS_HEADERS: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": cors.allowedMethods.join(", "),
  "access-control-allow-headers": [...cors.allowedHeaders, "authorization"].join(", "),
  "access-control-expose-headers": cors.exposedHeaders.join(", "),
  "access-control-max-age": "7200",
};

/** The device the request gate authenticated; the anonymous one for open services. */
const DEVICE = createContextKey<AuthedDevice>({ userId: "", deviceId: "" });

type Handler = (request: IncomingMessage | Http2ServerRequest, response: ServerResponse | Http2ServerResponse) => void;

export class GrpcWebEdge {
  private readonly handler: Handler;
  private readonly prefixes: string[];
  private readonly streams = { open: 0 };

  constructor(options: GrpcWebEdgeOptions) {
    const { messenger, log } = options;
    const { registry } = serviceDescriptors();
    const table = serviceTable(messenger, this.streams);
    this.prefixes = table.map((entry) => `/${entry.definition.fullName}/`);
    const authedServices = new Set(table.filter((entry) => entry.isAuthed).map((entry) => entry.definition.fullName));
    this.handler = connectNodeAdapter({
      requestGate: async (context) => {
        if (!authedServices.has(context.service.typeName)) return;
        try {
          const header = context.requestHeader.get("authorization") ?? undefined;
          context.values.set(DEVICE, await authenticateBearer(messenger, header));
        } catch (error) {
          throw toConnectError(error, context.method, log);
        }
      },
      grpcWeb: true,
      connect: false,
      grpc: false,
      readMaxBytes: MAX_FRAME_BYTES,
      writeMaxBytes: MAX_FRAME_BYTES,
      routes: (router: ConnectRouter) => {
        for (const entry of table) {
          const service = registry.getService(entry.definition.fullName);
          if (service === undefined) throw new Error(`no descriptor for ${entry.definition.fullName}`);
          addService(router, service, entry, log);
        }
      },
    });
  }

  /** Open Subscribe streams, for metrics. */
  get streamCount(): number {
    return this.streams.open;
  }

  /** Serves gRPC-web paths (and their CORS preflight); false for any other request. */
  handle(request: IncomingMessage | Http2ServerRequest, response: ServerResponse | Http2ServerResponse): boolean {
    const path = request.url ?? "/";
    if (!this.prefixes.some((prefix) => path.startsWith(prefix))) return false;
    const plain = response as ServerResponse;
    for (const [name, value] of Object.entries(CORS_HEADERS)) plain.setHeader(name, value);
    if (request.method === "OPTIONS") {
      plain.writeHead(204);
      plain.end();
      return true;
    }
    this.handler(request, response);
    return true;
  }
}

function addService(router: ConnectRouter, service: DescService, entry: ServiceEntry, log: Logger): void {
  for (const [key, definition] of Object.entries(entry.definition.methods)) {
    const method = service.methods.find((m) => m.name === definition.name);
    const implementation = entry.methods[key];
    if (method === undefined || implementation === undefined) continue;
    const call = (context: HandlerContext): ServiceCall => ({
      device: context.values.get(DEVICE),
      signal: context.signal,
    });
    const toRequest = (request: unknown): never =>
      definition.requestType.decode(toBinary(method.input, request as never)) as never;
    const toResponse = (response: unknown) =>
      fromBinary(method.output, definition.responseType.encode(response).finish());
    const fail = (error: unknown): ConnectError => toConnectError(error, method, log);
    if (definition.responseStream) {
      router.rpc(method, async function* (request: unknown, context: HandlerContext) {
        try {
          const responses = implementation(toRequest(request), call(context)) as AsyncIterable<unknown>;
          for await (const response of responses) yield toResponse(response);
        } catch (error) {
          throw fail(error);
        }
      } as never);
    } else {
      router.rpc(method, (async (request: unknown, context: HandlerContext) => {
        try {
          return toResponse(await implementation(toRequest(request), call(context)));
        } catch (error) {
          throw fail(error);
        }
      }) as never);
    }
  }
}

function toConnectError(error: unknown, method: DescMethod, log: Logger): ConnectError {
  if (error instanceof ConnectError) return error;
  if (isInternal(error)) log.error({ err: error, method: method.name, transport: "grpc-web" }, "grpc-web call failed");
  const { status, detail } = toGrpcFailure(error);
  // Connect packs this into the google.rpc.Status of `grpc-status-details-bin`
  // with type_url type.googleapis.com/remessenger.v1.ErrorDetail.
  const desc = serviceDescriptors().registry.getMessage("remessenger.v1.ErrorDetail");
  if (desc === undefined) throw new Error("no descriptor for remessenger.v1.ErrorDetail");
  const details = [{ desc, value: fromBinary(desc, ErrorDetail.encode(detail).finish()) }];
  return new ConnectError(detail.message, toConnectCode(status), undefined, details);
}

/** gRPC status numbers and Connect codes are the same numbers (both follow grpc/status.proto). */
const CONNECT_CODES = new Map<number, Code>(
  Object.values(Code)
    .filter((value): value is Code => typeof value === "number")
    .map((code) => [code, code]),
);

function toConnectCode(status: number): Code {
  return CONNECT_CODES.get(status) ?? Code.Internal;
}
