/**
 * A raw frame client over any Transport (here: the DNS tunnel pipes), for
 * the DNS tunnel benchmark: log in with a device key made by the frame
 * driver, send requests, take pushes, ack. The benchmark measures the pipe,
 * not the session's bookkeeping.
 */
import { sign } from "node:crypto";
import type { TransportFactory, Transport } from "@remessenger/client-core";
import {
  loginProof,
  type ClientRequest,
  type ServerBodyFrame,
  decodeServerFrame,
  encodeClientFrame,
  AckRequest,
  LoginRequest,
  type Message,
} from "@remessenger/protocol";
import type { Identity } from "../scripts/harness/frame-driver.ts";

const REQUEST_TIMEOUT_MS = 60_000;

export class TunnelFrameClient {
  readonly transport: Transport;
  private readonly waiters = new Map<
    number,
    { resolve: (frame: ServerBodyFrame) => void; reject: (error: Error) => void }
  >();
  /** Why the tunnel closed, once it did. */
  closedBecause: string | undefined;
  private nextRequestId = 1;
  private helloNonce: Uint8Array | undefined;
  private readonly hello = Promise.withResolvers<void>();
  onMessage: (message: Message) => void = () => undefined;

  private constructor(factory: TransportFactory) {
    // A close before the hello rejects it; login() awaits it, later closes have nobody waiting.
    this.hello.promise.catch(() => undefined);
    this.transport = factory.create({
      onFrame: (bytes) => {
        this.onFrame(bytes);
      },
      onClose: (reason) => {
        this.closedBecause = reason.reason;
        const error = new Error(`tunnel closed: ${reason.reason}`);
        this.hello.reject(error);
        for (const waiter of this.waiters.values()) waiter.reject(error);
        this.waiters.clear();
      },
    });
  }

  static async login(factory: TransportFactory, identity: Identity, signal: AbortSignal): Promise<TunnelFrameClient> {
    const client = new TunnelFrameClient(factory);
    await client.transport.connect({ signal, timeoutMs: 30_000 });
    await client.hello.promise;
    const nonce = client.helloNonce ?? new Uint8Array(0);
    const signature = new Uint8Array(sign(null, loginProof(nonce, identity.deviceId), identity.key.privateKey));
    await client.call({
      $case: "login",
      value: LoginRequest.fromPartial({ deviceId: identity.deviceId, nonce, signature }),
    });
    return client;
  }

  async call(request: ClientRequest): Promise<ServerBodyFrame["body"]> {
    const requestId = this.nextRequestId++;
    const answer = new Promise<ServerBodyFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(requestId);
        reject(new Error(`no answer to ${request.$case} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.waiters.set(requestId, {
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
    this.transport.send(encodeClientFrame({ requestId, request }));
    const { body } = await answer;
    if (body.$case === "error") throw new Error(`${request.$case}: ${body.value.message}`);
    return body;
  }

  ack(chatId: string, throughSeq: number): void {
    this.transport.send(
      encodeClientFrame({
        requestId: 0,
        request: { $case: "ack", value: AckRequest.fromPartial({ acks: [{ chatId, throughSeq }] }) },
      }),
    );
  }

  close(): void {
    this.transport.close(1000, "done");
  }

  private onFrame(bytes: Uint8Array): void {
    const frame = decodeServerFrame(bytes);
    if (frame.body.$case === "hello") {
      this.helloNonce = frame.body.value.challenge?.nonce;
      this.hello.resolve();
      return;
    }
    if (frame.body.$case === "push") {
      const push = frame.body.value.push;
      if (push?.$case === "message") this.onMessage(push.value);
      return;
    }
    const waiter = this.waiters.get(frame.requestId);
    if (waiter === undefined) return;
    this.waiters.delete(frame.requestId);
    waiter.resolve(frame);
  }
}
