import { describe, expect, it } from "vitest";
import { StreamSender } from "./tunnel-stream.ts";

const RTO_MS = 1_000;
const REORDER_MS = 20;

function sendAll(sender: StreamSender, count: number, nowMs: number): number[] {
  const seqs: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const chunk = sender.nextChunk(10, nowMs, RTO_MS);
    if (chunk === undefined) break;
    seqs.push(chunk.seq);
  }
  return seqs;
}

describe("StreamSender", () => {
  it("never runs further past the receiver's cumulative ack than the window, SACKed chunks or not", () => {
    const sender = new StreamSender(8);
    sender.write(new Uint8Array(1_000));
    expect(sendAll(sender, 20, 0)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // 1..7 arrived, 0 did not: the receiver buffers 1..7 and would drop 8 and beyond.
    sender.onAck({ next: 0, sack: 0b111_1111 }, 1, REORDER_MS);
    expect(sender.hasWork(1, RTO_MS)).toBe(false);
    expect(sendAll(sender, 20, 1)).toEqual([]);
    sender.onAck({ next: 8, sack: 0 }, 2, REORDER_MS);
    expect(sendAll(sender, 20, 2)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
  });

  it("resends a chunk reported missing for the reorder time once, byte for byte; later only after the RTO", () => {
    const sender = new StreamSender(64);
    sender.write(Uint8Array.from({ length: 40 }, (_, i) => i));
    const first = sender.nextChunk(10, 0, RTO_MS);
    expect(sendAll(sender, 3, 0)).toEqual([1, 2, 3]);
    // Chunks sent in the same millisecond: no later-sent chunk tells the hole from reordering...
    sender.onAck({ next: 0, sack: 0b111 }, 1, REORDER_MS);
    expect(sender.nextChunk(10, 1, RTO_MS)).toBeUndefined();
    // ...but a hole still reported after the reorder time does.
    sender.onAck({ next: 0, sack: 0b111 }, 1 + REORDER_MS, REORDER_MS);
    const resent = sender.nextChunk(10, 1 + REORDER_MS, RTO_MS);
    expect(resent?.seq).toBe(0);
    expect(resent?.bytes).toEqual(first?.bytes);
    sender.onAck({ next: 0, sack: 0b111 }, 100, REORDER_MS);
    expect(sender.nextChunk(10, 100, RTO_MS)).toBeUndefined();
    expect(sender.nextChunk(10, 1 + REORDER_MS + RTO_MS, RTO_MS)?.seq).toBe(0);
  });
});
