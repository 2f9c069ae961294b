/**
 * Bytes ⇄ frames, the one place where network input becomes typed values.
 * Decoding rejects oversized, undecodable and empty frames with a
 * RemessengerError, so code past this point can trust the frame's shape.
 */
import { RemessengerError } from "./errors.ts";
import { MAX_FRAME_BYTES } from "./limits.ts";
import { ClientFrame, ErrorCode, ServerFrame } from "./proto.ts";

/** A ClientFrame whose request is known to be set. */
export type ClientRequestFrame = ClientFrame & { request: NonNullable<ClientFrame["request"]> };
/** A ServerFrame whose body is known to be set. */
export type ServerBodyFrame = ServerFrame & { body: NonNullable<ServerFrame["body"]> };

export type ClientRequest = ClientRequestFrame["request"];
export type ServerBody = ServerBodyFrame["body"];

export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  return checkedSize(ClientFrame.encode(frame).finish());
}

export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  return checkedSize(ServerFrame.encode(frame).finish());
}

/**
 * Decodes a client frame. A frame whose request case this build does not know
 * decodes with the request unset: it is reported as UNIMPLEMENTED with the
 * request id kept, so the sender can match the error to its request.
 */
export function decodeClientFrame(bytes: Uint8Array): ClientRequestFrame {
  const frame = decodeWith(ClientFrame, bytes, "client frame");
  if (frame.request === undefined) {
    throw new FrameError(
      ErrorCode.ERROR_CODE_UNIMPLEMENTED,
      "frame carries no request this server knows",
      frame.requestId,
    );
  }
  return frame as ClientRequestFrame;
}

export function decodeServerFrame(bytes: Uint8Array): ServerBodyFrame {
  const frame = decodeWith(ServerFrame, bytes, "server frame");
  if (frame.body === undefined) {
    throw new FrameError(
      ErrorCode.ERROR_CODE_UNIMPLEMENTED,
      "frame carries no body this client knows",
      frame.requestId,
    );
  }
  return frame as ServerBodyFrame;
}

/** A decoding failure that still knows which request it belongs to (0 when unknown). */
export class FrameError extends RemessengerError {
  readonly requestId: number;
  constructor(code: ErrorCode, message: string, requestId: number, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.requestId = requestId;
  }
}

function checkedSize(bytes: Uint8Array): Uint8Array {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_TOO_LARGE,
      `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`,
    );
  }
  return bytes;
}

function decodeWith<T>(codec: { decode(input: Uint8Array): T }, bytes: Uint8Array, what: string): T {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new FrameError(
      ErrorCode.ERROR_CODE_TOO_LARGE,
      `${what} of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`,
      0,
    );
  }
  if (bytes.length === 0) throw new FrameError(ErrorCode.ERROR_CODE_BAD_FRAME, `empty ${what}`, 0);
  try {
    return codec.decode(bytes);
  } catch (cause) {
    throw new FrameError(ErrorCode.ERROR_CODE_BAD_FRAME, `undecodable ${what}`, 0, cause);
  }
}
