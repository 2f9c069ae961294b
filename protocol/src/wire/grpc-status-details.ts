/**
 * The structured error of a gRPC or gRPC-web call: the `grpc-status-details-bin`
 * trailer, a google.rpc.Status whose one detail is our ErrorDetail packed in an
 * Any (type_url ERROR_DETAIL_TYPE_URL), the convention of googleapis' rich error
 * model. Any gRPC client of any language decodes it with its stock
 * google.rpc.Status and remessenger.v1.ErrorDetail from proto/.
 *
 * Invariant: decode(encode(status, detail)) gives back the same detail; bytes
 * that are not such a Status decode to undefined, never to a guess.
 */
import { Any, ErrorDetail, RpcStatus } from "./proto.ts";

/** The trailer (metadata key) gRPC reserves for a binary google.rpc.Status. */
export const GRPC_STATUS_DETAILS_KEY = "grpc-status-details-bin";

export const ERROR_DETAIL_TYPE_URL = "type.googleapis.com/remessenger.v1.ErrorDetail";

/** A google.rpc.Status carrying `detail`, for the call's gRPC status code `grpcCode`. */
export function encodeStatusDetails(grpcCode: number, detail: ErrorDetail): Uint8Array {
  const packed: Any = { typeUrl: ERROR_DETAIL_TYPE_URL, value: ErrorDetail.encode(detail).finish() };
  return RpcStatus.encode({ code: grpcCode, message: detail.message, details: [packed] }).finish();
}

/** The ErrorDetail in a `grpc-status-details-bin` value, or undefined when it holds none. */
export function decodeStatusDetails(bytes: Uint8Array): ErrorDetail | undefined {
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(bytes);
  } catch {
    // Not a google.rpc.Status: a peer that is not ours; the caller keeps the plain status.
    return undefined;
  }
  const packed = status.details.find((any) => any.typeUrl === ERROR_DETAIL_TYPE_URL);
  if (packed === undefined) return undefined;
  try {
    return ErrorDetail.decode(packed.value);
  } catch {
    return undefined;
  }
}
