/**
 * One client's frame connection, whatever pipe carries it (WebSocket now,
 * HTTPS and the DNS tunnel later): hello, login, requests, pushes.
 *
 * - Every request with an id gets exactly one answer: its response or an error.
 * - Requests run concurrently, but each is handed to the Messenger in arrival
 *   order without an await in between, so sends keep their order per chat.
 * - Input that is not a frame gets an error frame; a peer that keeps sending
 *   garbage is closed. Nothing a peer sends can throw out of this class.
 */
import type { Logger } from "pino";
import {
  RemessengerError,
  assertNever,
  MAX_FRAME_BYTES,
  type ClientRequest,
  FrameError,
  type ServerBody,
  decodeClientFrame,
  encodeServerFrame,
  ErrorCode,
  type Message,
  type ServerFrame,
  type ServerPush,
  type TunnelInfo,
} from "@remessenger/protocol";
import type { AuthedDevice, Messenger, Subscription } from "../core/messenger.ts";
import { isInternal, toErrorDetail } from "./to-status.ts";

/** Bad frames tolerated on one connection before it is closed. */
export const MAX_BAD_FRAMES = 16;
export const SERVER_VERSION = "0.1.0";

/** What a frame edge gives the session: a way to send, to close, and its backpressure. */
export interface FramePipe {
  send(frame: Uint8Array): void;
  isWritable(): boolean;
  /** Closes the pipe; `code` follows WebSocket close codes (1008 policy, 1009 too big). */
  close(code: number, reason: string): void;
}

/**
 * A message pushed to many connections is encoded once: the pump hands every
 * recipient the same Message object, and the frame bytes are kept with it.
 */
const encodedPushes = new WeakMap<Message, Uint8Array>();

function encodedMessagePush(message: Message): Uint8Array {
  let bytes = encodedPushes.get(message);
  if (bytes === undefined) {
    bytes = encodeServerFrame({
      requestId: 0,
      body: { $case: "push", value: { push: { $case: "message", value: message } } },
    });
    encodedPushes.set(message, bytes);
  }
  return bytes;
}

const PRE_LOGIN_REQUESTS: ReadonlySet<ClientRequest["$case"]> = new Set([
  "getChallenge",
  "register",
  "login",
  "ping",
  "linkDevice",
]);

export class FrameSession {
  private readonly messenger: Messenger;
  private readonly pipe: FramePipe;
  private readonly log: Logger;
  private device: AuthedDevice | undefined;
  private isAuthenticating = false;
  private subscription: Subscription | undefined;
  private badFrames = 0;
  private isClosed = false;

  constructor(messenger: Messenger, pipe: FramePipe, log: Logger) {
    this.messenger = messenger;
    this.pipe = pipe;
    this.log = log;
  }

  /** Sends the hello with a login challenge bound to this connection (and the DNS tunnel, if the server has one). */
  open(now: number, tunnel?: TunnelInfo): void {
    this.write({
      requestId: 0,
      body: {
        $case: "hello",
        value: {
          challenge: this.messenger.newChallenge(),
          serverTimeMs: now,
          serverVersion: SERVER_VERSION,
          maxFrameBytes: MAX_FRAME_BYTES,
          tunnel,
        },
      },
    });
  }

  onFrame(bytes: Uint8Array): void {
    if (this.isClosed) return;
    let frame;
    try {
      frame = decodeClientFrame(bytes);
    } catch (error) {
      this.onBadFrame(error);
      return;
    }
    const { requestId, request } = frame;
    if (this.device === undefined && !PRE_LOGIN_REQUESTS.has(request.$case)) {
      this.fail(requestId, new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "log in first"));
      return;
    }
    this.dispatch(request).then(
      (body) => {
        if (body !== undefined && requestId !== 0) this.write({ requestId, body });
      },
      (error: unknown) => {
        this.fail(requestId, error);
      },
    );
  }

  /** The pipe got input that cannot be a frame (a WebSocket text message...). */
  onUnframedInput(reason: string): void {
    if (this.isClosed) return;
    this.onBadFrame(new RemessengerError(ErrorCode.ERROR_CODE_BAD_FRAME, reason));
  }

  /** The pipe's buffer drained: pushes may continue. */
  onWritable(): void {
    this.subscription?.pump.onWritable();
  }

  onClose(): void {
    this.isClosed = true;
    this.subscription?.close();
    this.subscription = undefined;
  }

  get authedDevice(): AuthedDevice | undefined {
    return this.device;
  }

  /**
   * Starts the request. Async, but each case reaches the Messenger before its
   * first await, so requests start in arrival order.
   */
  private async dispatch(request: ClientRequest): Promise<ServerBody | undefined> {
    const { messenger } = this;
    switch (request.$case) {
      case "getChallenge":
        return Promise.resolve({ $case: "getChallenge", value: messenger.newChallenge() });
      case "ping":
        return Promise.resolve({ $case: "ping", value: messenger.ping(request.value) });
      case "register":
        return this.authenticateWith(() => messenger.register(request.value)).then((value) => ({
          $case: "register",
          value,
        }));
      case "login":
        return this.authenticateWith(() => messenger.login(request.value)).then((value) => ({ $case: "login", value }));
      case "createChat":
        return messenger.createChat(this.loggedIn(), request.value).then((value) => ({ $case: "createChat", value }));
      case "getChat":
        return messenger.getChat(this.loggedIn(), request.value).then((value) => ({ $case: "getChat", value }));
      case "listChats":
        return messenger.listChats(this.loggedIn()).then((value) => ({ $case: "listChats", value }));
      case "getGroupOperations":
        return messenger
          .getGroupOperations(this.loggedIn(), request.value)
          .then((value) => ({ $case: "getGroupOperations", value }));
      case "getUser":
        return messenger.getUser(this.loggedIn(), request.value).then((value) => ({ $case: "getUser", value }));
      case "sendMessage":
        return messenger.sendMessage(this.loggedIn(), request.value).then((value) => ({ $case: "sendMessage", value }));
      case "ack":
        return messenger.ack(this.loggedIn(), request.value).then((cursors) => {
          for (const { chatId, throughSeq } of cursors) this.subscription?.pump.onAcked(chatId, throughSeq);
          return { $case: "ack", value: {} };
        });
      case "subscribe":
        return Promise.resolve(this.subscribe(this.loggedIn()));
      case "publishPreKeys":
        return messenger.deviceKeys
          .publish(this.loggedIn().deviceId, request.value)
          .then((stock) => ({ $case: "publishPreKeys", value: { stock } }));
      case "getPreKeyBundles":
        this.loggedIn();
        return messenger.deviceKeys.takeBundles(request.value).then((value) => ({ $case: "getPreKeyBundles", value }));
      case "linkDevice":
        return this.authenticateWith(() => messenger.linkDevice(request.value)).then((value) => ({
          $case: "linkDevice",
          value,
        }));
      default:
        return assertNever(request);
    }
  }

  private loggedIn(): AuthedDevice {
    if (this.device === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "log in first");
    return this.device;
  }

  private async authenticateWith<R>(attempt: () => Promise<{ device: AuthedDevice; response: R }>): Promise<R> {
    if (this.device !== undefined || this.isAuthenticating) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "this connection is logged in already");
    }
    this.isAuthenticating = true;
    let device: AuthedDevice;
    let response: R;
    try {
      ({ device, response } = await attempt());
    } finally {
      this.isAuthenticating = false;
    }
    this.device = device;
    this.log.info({ userId: device.userId, deviceId: device.deviceId }, "device logged in");
    return response;
  }

  private subscribe(device: AuthedDevice): ServerBody {
    if (this.subscription !== undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "this connection is subscribed already");
    }
    this.subscription = this.messenger.subscribe(device, {
      push: (push: ServerPush) => {
        if (push.push?.$case === "message") {
          this.writeBytes(encodedMessagePush(push.push.value));
          return;
        }
        this.write({ requestId: 0, body: { $case: "push", value: push } });
      },
      isWritable: () => !this.isClosed && this.pipe.isWritable(),
    });
    this.subscription.synced.catch((error: unknown) => {
      this.log.error({ deviceId: device.deviceId, err: error }, "sync failed");
      this.pipe.close(1011, "sync failed");
    });
    return { $case: "subscribe", value: { push: undefined } };
  }

  private onBadFrame(error: unknown): void {
    this.badFrames += 1;
    const requestId = error instanceof FrameError ? error.requestId : 0;
    this.fail(requestId, error);
    if (this.badFrames >= MAX_BAD_FRAMES) {
      this.log.warn({ deviceId: this.device?.deviceId, badFrames: this.badFrames }, "closing: too many bad frames");
      this.close(1008, "too many bad frames");
    }
  }

  private fail(requestId: number, error: unknown): void {
    if (isInternal(error)) {
      this.log.error({ deviceId: this.device?.deviceId, err: error }, "request failed");
    }
    this.write({ requestId, body: { $case: "error", value: toErrorDetail(error) } });
  }

  private write(frame: ServerFrame): void {
    if (this.isClosed) return;
    let bytes: Uint8Array;
    try {
      bytes = encodeServerFrame(frame);
    } catch (error) {
      // A response too large to frame: answer with the error instead.
      this.log.error({ deviceId: this.device?.deviceId, err: error }, "response not encodable");
      bytes = encodeServerFrame({ requestId: frame.requestId, body: { $case: "error", value: toErrorDetail(error) } });
    }
    this.writeBytes(bytes);
  }

  private writeBytes(bytes: Uint8Array): void {
    if (!this.isClosed) this.pipe.send(bytes);
  }

  private close(code: number, reason: string): void {
    this.onClose();
    this.pipe.close(code, reason);
  }
}
