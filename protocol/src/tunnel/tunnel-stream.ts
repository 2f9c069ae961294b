/**
 * The reliable byte stream under the DNS tunnel, one per direction, with no
 * I/O and time as an input: the client and the gateway each run a
 * StreamSender for what they send and a StreamReceiver for what they get.
 *
 * The sender cuts its bytes into chunks when they first go out, sized to the
 * room of the query or answer that carries them, numbers them 0, 1, 2, ...
 * and keeps each one, byte for byte, until it is acked: a retransmission is
 * the same chunk with the same number. The receiver hands bytes on strictly
 * in order, each once, and reports what it has as an AckInfo (cumulative
 * `next` plus SACK bits).
 *
 * Bounds: a sender never runs more than `windowChunks` past the receiver's
 * cumulative ack; a receiver buffers at most `windowChunks` out-of-order
 * chunks and drops chunks beyond its window (the sender retransmits them
 * later). Both ends of a tunnel use TUNNEL_WINDOW_CHUNKS, so nothing sent is
 * dropped for the window.
 *
 * Loss: a chunk is resent when its sender's RTO passes, or early when the
 * receiver reports a hole at it (SACK bits set) and either a chunk sent more
 * than `reorderMs` after it arrived, or the hole has been reported for
 * `reorderMs` (at high rates every SACKed chunk was sent within a few
 * milliseconds of the missing one, so the first test alone would wait out
 * the RTO). Early resends happen once per chunk; after that the RTO rules.
 */
import { type AckInfo, MAX_SEQ, SACK_BITS } from "./tunnel-packet.ts";

/** The stream window of both ends of a tunnel session, in chunks (~570 KB of answers at 1,100 bytes). */
export const TUNNEL_WINDOW_CHUNKS = 512;

export interface SentChunk {
  seq: number;
  bytes: Uint8Array;
  /** When it last went out; undefined while it waits for a retransmission. */
  sentAtMs: number | undefined;
  sends: number;
}

export interface AckResult {
  /** Chunks acked by this ack for the first time. */
  newlyAcked: number;
  /** Round-trip samples (ms) from chunks sent once and acked now. */
  rttSamplesMs: number[];
}

export class StreamSender {
  private readonly windowChunks: number;
  private queue: Uint8Array[] = [];
  private queueOffset = 0;
  private queuedBytes = 0;
  private readonly unacked = new Map<number, SentChunk>();
  private nextSeq = 0;
  /** Every seq below this is acked. */
  private ackedBelow = 0;
  /** The seq the receiver last reported missing ahead of SACKed chunks, and since when. */
  private holeSeq = -1;
  private holeSinceMs = 0;

  constructor(windowChunks: number) {
    this.windowChunks = windowChunks;
  }

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
  }

  /** Bytes written but not yet cut into a chunk. */
  get queuedByteCount(): number {
    return this.queuedBytes;
  }

  get unackedCount(): number {
    return this.unacked.size;
  }

  /** Nothing queued and nothing unacked. */
  get isIdle(): boolean {
    return this.queuedBytes === 0 && this.unacked.size === 0;
  }

  /** True when a chunk could go out now (a retransmission due or new bytes within the window). */
  hasWork(nowMs: number, rtoMs: number): boolean {
    if (this.canSendNew()) return true;
    for (const chunk of this.unacked.values()) if (isDue(chunk, nowMs, rtoMs)) return true;
    return false;
  }

  /** Queued bytes may go out as a new chunk: within the window past the cumulative ack, and seqs left. */
  private canSendNew(): boolean {
    return this.queuedBytes > 0 && this.nextSeq - this.ackedBelow < this.windowChunks && this.nextSeq <= MAX_SEQ;
  }

  /** The sequence numbers sent so far are all below this. */
  get sentBelow(): number {
    return this.nextSeq;
  }

  /**
   * The next chunk to send in a packet with room for `maxBytes`: the oldest
   * unacked chunk that is due (never sent since it was marked lost, or sent
   * more than `rtoMs` ago) and fits, else a new chunk cut from the queue.
   */
  nextChunk(maxBytes: number, nowMs: number, rtoMs: number): SentChunk | undefined {
    for (const chunk of this.unacked.values()) {
      if (isDue(chunk, nowMs, rtoMs) && chunk.bytes.length <= maxBytes) {
        chunk.sentAtMs = nowMs;
        chunk.sends += 1;
        return chunk;
      }
    }
    if (maxBytes <= 0 || !this.canSendNew()) return undefined;
    const bytes = this.take(Math.min(maxBytes, this.queuedBytes));
    const chunk: SentChunk = { seq: this.nextSeq, bytes, sentAtMs: nowMs, sends: 1 };
    this.nextSeq += 1;
    this.unacked.set(chunk.seq, chunk);
    return chunk;
  }

  /** The packet that carried `seq` is lost: resend it at the next chance. */
  markLost(seq: number): void {
    const chunk = this.unacked.get(seq);
    if (chunk !== undefined) chunk.sentAtMs = undefined;
  }

  /**
   * Applies the receiver's ack. Acks for seqs never sent are ignored. A chunk
   * the receiver reports missing ahead of SACKed ones is taken as lost (once)
   * when a chunk sent more than `reorderMs` after it arrived or the hole has
   * been reported for `reorderMs`, and is resent at the next chance.
   */
  onAck(ack: AckInfo, nowMs: number, reorderMs: number): AckResult {
    const result: AckResult = { newlyAcked: 0, rttSamplesMs: [] };
    let newestSentAtMs = -Infinity;
    const next = Math.min(ack.next, this.nextSeq);
    const settle = (seq: number): void => {
      const chunk = this.unacked.get(seq);
      if (chunk === undefined) return;
      this.unacked.delete(seq);
      result.newlyAcked += 1;
      if (chunk.sentAtMs !== undefined) newestSentAtMs = Math.max(newestSentAtMs, chunk.sentAtMs);
      if (chunk.sends === 1 && chunk.sentAtMs !== undefined) result.rttSamplesMs.push(nowMs - chunk.sentAtMs);
    };
    if (next > this.ackedBelow) {
      if (next - this.ackedBelow <= this.unacked.size) {
        for (let seq = this.ackedBelow; seq < next; seq += 1) settle(seq);
      } else {
        for (const seq of [...this.unacked.keys()]) if (seq < next) settle(seq);
      }
      this.ackedBelow = next;
    }
    for (let bit = 0; bit < SACK_BITS; bit += 1) {
      if ((ack.sack & (1 << bit)) !== 0) settle(next + 1 + bit);
    }
    const missing = this.unacked.get(next);
    if (missing === undefined || ack.sack === 0) {
      this.holeSeq = -1;
      return result;
    }
    if (this.holeSeq !== next) {
      this.holeSeq = next;
      this.holeSinceMs = nowMs;
    }
    if (
      missing.sentAtMs !== undefined &&
      missing.sends === 1 &&
      (missing.sentAtMs + reorderMs < newestSentAtMs || nowMs - this.holeSinceMs >= reorderMs)
    ) {
      missing.sentAtMs = undefined;
    }
    return result;
  }

  private take(count: number): Uint8Array {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const head = this.queue[0];
      if (head === undefined) break;
      const available = head.length - this.queueOffset;
      const n = Math.min(available, count - filled);
      out.set(head.subarray(this.queueOffset, this.queueOffset + n), filled);
      filled += n;
      this.queueOffset += n;
      if (this.queueOffset === head.length) {
        this.queue.shift();
        this.queueOffset = 0;
      }
    }
    this.queuedBytes -= filled;
    return out;
  }
}

function isDue(chunk: SentChunk, nowMs: number, rtoMs: number): boolean {
  return chunk.sentAtMs === undefined || nowMs - chunk.sentAtMs >= rtoMs;
}

export type ReceiveResult = "delivered" | "duplicate" | "buffered" | "beyond-window";

export class StreamReceiver {
  private readonly windowChunks: number;
  private next = 0;
  private readonly buffered = new Map<number, Uint8Array>();

  constructor(windowChunks: number) {
    this.windowChunks = windowChunks;
  }

  /**
   * Takes chunk `seq`; calls `deliver` with every byte range that is now in
   * order (this chunk and any buffered ones behind it).
   */
  receive(seq: number, bytes: Uint8Array, deliver: (bytes: Uint8Array) => void): ReceiveResult {
    if (seq < this.next || this.buffered.has(seq)) return "duplicate";
    if (seq >= this.next + this.windowChunks) return "beyond-window";
    if (seq !== this.next) {
      this.buffered.set(seq, bytes);
      return "buffered";
    }
    deliver(bytes);
    this.next += 1;
    for (let chunk = this.buffered.get(this.next); chunk !== undefined; chunk = this.buffered.get(this.next)) {
      this.buffered.delete(this.next);
      deliver(chunk);
      this.next += 1;
    }
    return "delivered";
  }

  /** What this receiver has: everything below `next`, and SACK bits for the 16 after it. */
  ackInfo(): AckInfo {
    let sack = 0;
    if (this.buffered.size > 0) {
      for (let bit = 0; bit < SACK_BITS; bit += 1) if (this.buffered.has(this.next + 1 + bit)) sack |= 1 << bit;
    }
    return { next: this.next, sack };
  }

  get receivedBelow(): number {
    return this.next;
  }

  get bufferedCount(): number {
    return this.buffered.size;
  }
}
