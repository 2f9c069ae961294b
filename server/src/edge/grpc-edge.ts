/**
 * The gRPC edge: the services of proto/remessenger/v1/service.proto over
 * @grpc/grpc-js (nice-grpc), for backend teams and load tools, with server
 * reflection (grpcurl works without the .proto files) and the standard
 * health service. The implementations are the table in grpc-services.ts,
 * which the gRPC-web edge serves too. Authenticated calls carry
 * `authorization: Bearer <session token>` from Register/Login.
 *
 * - grpc-js hands the request bytes over undecoded (withLateDecoding): the
 *   token is checked first, then the bytes are decoded, so garbage without a
 *   token is UNAUTHENTICATED and garbage with one is BAD_FRAME
 *   (INVALID_ARGUMENT), as frame-protocol.md says, not grpc-js's INTERNAL.
 * - A failed call carries its ErrorDetail in `grpc-status-details-bin`.
 */
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import { type CallContext, type Server, ServerError, type ServerMiddlewareCall, createServer } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import type { Logger } from "pino";
import { GRPC_STATUS_DETAILS_KEY, MAX_FRAME_BYTES, RemessengerError, ErrorCode } from "@remessenger/protocol";
import type { AuthedDevice, Messenger } from "../core/messenger.ts";
import { type ServiceCall, type ServiceEntry, authenticateBearer, serviceTable } from "./grpc-services.ts";
import { HEALTH_SERVICE, serviceDescriptors } from "./service-descriptors.ts";
import { isInternal, toGrpcFailure } from "./to-status.ts";

export interface GrpcEdgeOptions {
  messenger: Messenger;
  log: Logger;
  tls?: { certFile: string; keyFile: string };
}

export class GrpcEdge {
  private readonly server: Server;
  private readonly options: GrpcEdgeOptions;
  private readonly streams = { open: 0 };
  /** SERVING while the node serves; NOT_SERVING once it shuts down. */
  readonly health = HealthState();

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
        const failure = toGrpcFailure(error);
        // nice-grpc sends the call's trailer with the error status.
        context.trailer.set(GRPC_STATUS_DETAILS_KEY, failure.statusDetails);
        throw new ServerError(failure.status, failure.detail.message);
      }
    });

    for (const { definition, isAuthed, methods } of serviceTable(messenger, this.streams).map(withLateDecoding)) {
      // The table's methods take (request, { device, signal }): nice-grpc's context, plus the device.
      const implementation = methods as never;
      if (isAuthed) server.with(authedMiddleware(messenger)).add(definition, implementation);
      else server.add(definition, implementation);
    }
    const descriptors = serviceDescriptors();
    server.add(
      ServerReflectionService,
      ServerReflection(descriptors.protoset, [...descriptors.serviceNames, HEALTH_SERVICE]),
    );
    this.health.setStatus("healthy");
    server.add(HealthDefinition, HealthServiceImpl(this.health));
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
    this.health.setStatus("unhealthy");
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
    const device = await authenticateBearer(messenger, context.metadata.get("authorization"));
    return yield* call.next(call.request, { ...context, device });
  };
}

type Definition = ServiceEntry["definition"];
type RequestType = Definition["methods"][string]["requestType"];

/**
 * The entry with its requests left as bytes by grpc-js and decoded inside the
 * call, after the middleware (authentication) ran; bytes that are no request
 * are BAD_FRAME. grpc-js decodes before any middleware and answers a decode
 * failure INTERNAL ("Error deserializing request").
 */
function withLateDecoding(entry: ServiceEntry): ServiceEntry {
  const definitionMethods: Definition["methods"] = {};
  const methods: ServiceEntry["methods"] = {};
  for (const [key, method] of Object.entries(entry.definition.methods)) {
    const implementation = entry.methods[key];
    if (implementation === undefined) continue;
    const passBytes: RequestType = { ...method.requestType, decode: (input) => input as never };
    definitionMethods[key] = { ...method, requestType: passBytes };
    const path = `${entry.definition.fullName}/${method.name}`;
    const decode = (bytes: never): never => decodeRequest(path, method.requestType, bytes) as never;
    methods[key] = method.responseStream
      ? async function* (bytes: never, call: ServiceCall) {
          yield* implementation(decode(bytes), call) as AsyncIterable<unknown>;
        }
      : async (bytes: never, call: ServiceCall) => implementation(decode(bytes), call);
  }
  return { ...entry, definition: { ...entry.definition, methods: definitionMethods }, methods };
}

function decodeRequest(path: string, requestType: RequestType, bytes: Uint8Array): unknown {
  try {
    return requestType.decode(bytes);
  } catch (error) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_BAD_FRAME, `the bytes are not a request of ${path}`, {
      cause: error,
    });
  }
}
