/**
 * The gateway's side of one DNS tunnel session: the upstream stream
 * (reassembled, opened into frames for a FrameSession) and the downstream
 * stream (frames sealed into records, cut into chunks sized to each answer).
 * No sockets here: the gateway hands it decoded queries and the room of the
 * answer, and gets the answer back.
 *
 * - Each answer carries the upstream ack and, when there is one, a
 *   downstream chunk: a due retransmission first (byte-identical, same seq),
 *   else new bytes cut to fit this answer.
 * - A poll that finds nothing to send may be held up to `holdMs` and is
 *   answered as soon as a frame is written (long poll); data queries are
 *   never held.
 * - A record that does not open (forged or corrupt stream) ends the session.
 * - Downstream bytes are bounded: above HIGH_WATER the FrameSession's pump
 *   pauses (FramePipe.isWritable) and resumes below LOW_WATER.
 */
import type { Logger } from "pino";
import {
  RecordOpener,
  RecordSealer,
  type TunnelKeys,
  ANSWER_HEADER_BYTES,
  type TunnelAnswer,
  type TunnelQuery,
  MAX_FRAME_BYTES,
  StreamReceiver,
  StreamSender,
  TUNNEL_WINDOW_CHUNKS,
} from "@remessenger/protocol";
import type { Clock } from "../core/clock.ts";
import type { Messenger } from "../core/messenger.ts";
import { FrameSession } from "./frame-session.ts";

const HIGH_WATER_BYTES = 512 * 1024;
const LOW_WATER_BYTES = 128 * 1024;
const MIN_RTO_MS = 400;
const MAX_RTO_MS = 5_000;
/** Held polls per session: above a client's window (128 on plain DNS), so no poll comes back empty at once. */
const MAX_HELD_POLLS = 256;

export interface GatewaySessionOptions {
  sid: number;
  keys: TunnelKeys;
  messenger: Messenger;
  clock: Clock;
  log: Logger;
  holdMs: number;
  onClosed: (sid: number) => void;
}

interface HeldPoll {
  roomBytes: number;
  resolve: (answer: TunnelAnswer) => void;
  timer: NodeJS.Timeout;
}

export class GatewaySession {
  readonly sid: number;
  readonly keys: TunnelKeys;
  private readonly options: GatewaySessionOptions;
  private readonly sender = new StreamSender(TUNNEL_WINDOW_CHUNKS);
  private readonly receiver = new StreamReceiver(TUNNEL_WINDOW_CHUNKS);
  private readonly sealer: RecordSealer;
  private readonly opener: RecordOpener;
  private readonly frames: FrameSession;
  private readonly held: HeldPoll[] = [];
  private srttMs: number | undefined;
  private isPaused = false;
  private isWakeQueued = false;
  private isClosed = false;
  lastSeenMs: number;

  constructor(options: GatewaySessionOptions) {
    this.options = options;
    this.sid = options.sid;
    this.keys = options.keys;
    this.sealer = new RecordSealer(options.keys.downstream);
    this.opener = new RecordOpener(options.keys.upstream, MAX_FRAME_BYTES);
    this.lastSeenMs = options.clock.nowMs();
    this.frames = new FrameSession(
      options.messenger,
      {
        send: (frame) => {
          if (this.isClosed) return;
          this.sender.write(this.sealer.seal(frame));
          // Frames written in one turn (an answer and its pushes) leave together.
          if (!this.isWakeQueued && this.held.length > 0) {
            this.isWakeQueued = true;
            queueMicrotask(() => {
              this.isWakeQueued = false;
              this.wakeHeld();
            });
          }
        },
        isWritable: () => {
          if (this.sender.queuedByteCount < HIGH_WATER_BYTES) return true;
          this.isPaused = true;
          return false;
        },
        close: (_code, reason) => {
          this.close(reason);
        },
      },
      options.log,
    );
    this.frames.open(options.clock.nowMs());
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /**
   * Handles one decoded query of this session; resolves with its answer.
   * `roomBytes` is the tunnel payload the answer may carry (header included).
   */
  handle(query: Exclude<TunnelQuery, { kind: "handshake" }>, roomBytes: number): Promise<TunnelAnswer> | TunnelAnswer {
    const now = this.options.clock.nowMs();
    this.lastSeenMs = now;
    const acked = this.sender.onAck(query.ack, now, Math.max(20, (this.srttMs ?? 200) / 2));
    for (const sample of acked.rttSamplesMs) {
      this.srttMs = this.srttMs === undefined ? sample : 0.875 * this.srttMs + 0.125 * sample;
    }
    if (query.kind === "data") this.receive(query.seq, query.chunk);
    if (query.kind === "close") {
      const answer: TunnelAnswer = { kind: "empty", ack: this.receiver.ackInfo() };
      this.close("the client closed the tunnel");
      return answer;
    }
    const answer = this.answer(roomBytes, now);
    if (answer.kind === "empty" && query.kind === "poll" && this.options.holdMs > 0 && !this.isClosed) {
      if (this.held.length >= MAX_HELD_POLLS) return answer;
      return new Promise<TunnelAnswer>((resolve) => {
        const poll: HeldPoll = {
          roomBytes,
          resolve,
          timer: setTimeout(() => {
            const index = this.held.indexOf(poll);
            if (index >= 0) this.held.splice(index, 1);
            resolve(this.answer(roomBytes, this.options.clock.nowMs()));
          }, this.options.holdMs),
        };
        this.held.push(poll);
      });
    }
    return answer;
  }

  close(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.options.log.debug({ sid: this.sid, reason }, "tunnel session closed");
    this.frames.onClose();
    for (const poll of this.held.splice(0)) {
      clearTimeout(poll.timer);
      poll.resolve({ kind: "empty", ack: this.receiver.ackInfo() });
    }
    this.options.onClosed(this.sid);
  }

  private receive(seq: number, chunk: Uint8Array): void {
    if (this.isClosed) return;
    this.receiver.receive(seq, chunk, (bytes) => {
      if (this.isClosed) return;
      let frames: Uint8Array[];
      try {
        frames = this.opener.push(bytes);
      } catch (error) {
        this.options.log.warn({ sid: this.sid, err: error }, "closing tunnel session: bad record");
        this.close("bad record");
        return;
      }
      for (const frame of frames) this.frames.onFrame(frame);
    });
  }

  private answer(roomBytes: number, now: number): TunnelAnswer {
    const ack = this.receiver.ackInfo();
    if (this.isClosed) return { kind: "empty", ack };
    const chunk = this.sender.nextChunk(roomBytes - ANSWER_HEADER_BYTES, now, this.rtoMs());
    if (this.isPaused && this.sender.queuedByteCount < LOW_WATER_BYTES) {
      this.isPaused = false;
      this.frames.onWritable();
    }
    return chunk === undefined ? { kind: "empty", ack } : { kind: "data", seq: chunk.seq, ack, chunk: chunk.bytes };
  }

  private wakeHeld(): void {
    while (this.held.length > 0 && this.sender.hasWork(this.options.clock.nowMs(), this.rtoMs())) {
      const poll = this.held.shift();
      if (poll === undefined) break;
      clearTimeout(poll.timer);
      poll.resolve(this.answer(poll.roomBytes, this.options.clock.nowMs()));
    }
  }

  private rtoMs(): number {
    return Math.min(MAX_RTO_MS, Math.max(MIN_RTO_MS, 2 * (this.srttMs ?? 500)));
  }
}
