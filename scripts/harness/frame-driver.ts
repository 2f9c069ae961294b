/**
 * A deliberately low-level frame client for the server's end-to-end tests and
 * the benchmarks: it speaks raw frames over a real WebSocket, so a test can do
 * what the real client never would (send one id twice at once, withhold acks,
 * send garbage) and a benchmark measures the server, not client bookkeeping.
 * Product code uses client/core's session instead.
 */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import WebSocket from "ws";
import {
  loginProof,
  registerProof,
  RemessengerError,
  newMessageId,
  type ClientRequest,
  type ServerBodyFrame,
  decodeServerFrame,
  encodeClientFrame,
  ChatKind,
  type GetChallengeResponse,
  type Message,
  type Receipt,
  type SendMessageResponse,
  type ServerPush,
} from "@remessenger/protocol";

const REQUEST_TIMEOUT_MS = 15_000;

type ResponseOf<C extends string> =
  Extract<ServerBodyFrame["body"], { $case: C }> extends { value: infer V } ? V : never;

export interface DeviceKey {
  privateKey: KeyObject;
  publicKey: Uint8Array;
}

export function newDeviceKey(): DeviceKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const jwk = publicKey.export({ format: "jwk" });
  return { privateKey, publicKey: new Uint8Array(Buffer.from(jwk.x ?? "", "base64url")) };
}

export interface Identity {
  key: DeviceKey;
  userId: string;
  deviceId: string;
}

type Waiter = { resolve(frame: ServerBodyFrame): void; reject(error: Error): void; timer: NodeJS.Timeout };

export class FrameDriver {
  readonly socket: WebSocket;
  readonly pushes: ServerPush[] = [];
  readonly errors: ServerBodyFrame[] = [];
  closeCode: number | undefined;
  private nextRequestId = 1;
  private readonly waiters = new Map<number, Waiter>();
  private readonly pushWaiters: Array<() => void> = [];
  private hello: GetChallengeResponse | undefined;
  private readonly opened: Promise<void>;
  readonly closed: Promise<number>;

  constructor(baseUrl: string) {
    this.socket = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/v1/ws`);
    const { promise: opened, resolve: onHello, reject: onFail } = Promise.withResolvers<void>();
    this.opened = opened;
    this.socket.on("error", onFail);
    this.closed = new Promise((resolve) => {
      this.socket.on("close", (code) => {
        this.closeCode = code;
        for (const waiter of this.waiters.values()) waiter.reject(new Error(`connection closed (${code})`));
        this.waiters.clear();
        this.notifyPush();
        onFail(new Error(`closed before hello (${code})`));
        resolve(code);
      });
    });
    this.socket.on("message", (data: Buffer) => {
      const frame = decodeServerFrame(new Uint8Array(data));
      if (frame.body.$case === "hello") {
        this.hello = frame.body.value.challenge;
        onHello();
        return;
      }
      if (frame.body.$case === "push") {
        this.pushes.push(frame.body.value);
        this.notifyPush();
        return;
      }
      const waiter = this.waiters.get(frame.requestId);
      if (waiter === undefined) {
        if (frame.body.$case === "error") this.errors.push(frame);
        this.notifyPush();
        return;
      }
      this.waiters.delete(frame.requestId);
      clearTimeout(waiter.timer);
      waiter.resolve(frame);
      this.notifyPush();
    });
  }

  static async connect(baseUrl: string): Promise<FrameDriver> {
    const driver = new FrameDriver(baseUrl);
    await driver.opened;
    return driver;
  }

  /** Sends raw bytes, as a broken or hostile client would. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.send(bytes);
  }

  /** Sends a request and resolves with the server's answer frame (response or error). */
  request(request: ClientRequest): Promise<ServerBodyFrame> {
    const requestId = this.nextRequestId++;
    const { promise, resolve, reject } = Promise.withResolvers<ServerBodyFrame>();
    const timer = setTimeout(() => {
      this.waiters.delete(requestId);
      reject(new Error(`no answer to ${request.$case} within ${REQUEST_TIMEOUT_MS} ms`));
    }, REQUEST_TIMEOUT_MS);
    this.waiters.set(requestId, { resolve, reject, timer });
    this.socket.send(encodeClientFrame({ requestId, request }));
    return promise;
  }

  /** Like request(), but returns the response value of the expected case or throws the error. */
  async call<C extends ClientRequest["$case"]>(request: Extract<ClientRequest, { $case: C }>): Promise<ResponseOf<C>> {
    const frame = await this.request(request);
    const body: ServerBodyFrame["body"] = frame.body;
    if (body.$case === "error") throw new RemessengerError(body.value.code, body.value.message);
    if (body.$case !== request.$case) throw new Error(`answer ${body.$case} to ${request.$case}`);
    return body.value as ResponseOf<C>;
  }

  async register(name: string, key: DeviceKey = newDeviceKey()): Promise<Identity> {
    const nonce = this.takeChallenge();
    const signature = sign(null, registerProof(nonce, key.publicKey, name), key.privateKey);
    const result = await this.call({
      $case: "register",
      value: { displayName: name, identityKey: key.publicKey, nonce, signature },
    });
    return { key, userId: result.userId, deviceId: result.deviceId };
  }

  async login(identity: Identity): Promise<void> {
    const nonce = this.takeChallenge();
    const signature = sign(null, loginProof(nonce, identity.deviceId), identity.key.privateKey);
    await this.call({ $case: "login", value: { deviceId: identity.deviceId, nonce, signature } });
  }

  async createDirectChat(otherUserId: string): Promise<string> {
    const result = await this.call({
      $case: "createChat",
      value: { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [otherUserId], title: "" },
    });
    if (result.chat === undefined) throw new Error("no chat in answer");
    return result.chat.chatId;
  }

  send(chatId: string, text: string, messageId: Uint8Array = newMessageId()): Promise<SendMessageResponse> {
    return this.call({
      $case: "sendMessage",
      value: { chatId, messageId, payload: new TextEncoder().encode(text), devicePayloads: [] },
    });
  }

  async subscribe(): Promise<void> {
    await this.call({ $case: "subscribe", value: {} });
  }

  /** Acks without asking for an answer (request id 0), as clients do. */
  ack(chatId: string, throughSeq: number): void {
    this.socket.send(
      encodeClientFrame({ requestId: 0, request: { $case: "ack", value: { acks: [{ chatId, throughSeq }] } } }),
    );
  }

  messages(): Message[] {
    return this.pushes.flatMap((p) => (p.push?.$case === "message" ? [p.push.value] : []));
  }

  receipts(): Receipt[] {
    return this.pushes.flatMap((p) => (p.push?.$case === "receipt" ? [p.push.value] : []));
  }

  isSynced(): boolean {
    return this.pushes.some((p) => p.push?.$case === "syncComplete");
  }

  /** Waits until `predicate` holds after some frame arrived, or fails after `timeoutMs`. */
  async waitFor(predicate: () => boolean, what: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.pushWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }

  private takeChallenge(): Uint8Array {
    if (this.hello === undefined) throw new Error("no unused challenge; call getChallenge");
    const { nonce } = this.hello;
    this.hello = undefined;
    return nonce;
  }

  private notifyPush(): void {
    for (const wake of this.pushWaiters.splice(0)) wake();
  }
}
