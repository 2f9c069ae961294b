/**
 * Group fan-out: how long the real server takes to hand one group message to
 * every member device, for groups of 10, 100, 1,000 and 10,000 member devices,
 * on the embedded store and on Redis.
 *
 * Setup: as many users as the largest group, one device each, each on its own
 * WebSocket, logged in and subscribed (FrameDriver), then taken over by a lean
 * loop that records when each probe arrives and acks cumulatively, as a
 * client does. For each size, member 0 creates a group of the first N users
 * (a signed CREATE of up to 1,000, then ADDs of 1,000), waits until every
 * member has the last operation, then sends PROBES messages one at a time,
 * each waiting until every other member device has it (bounded by a timeout).
 *
 * Every member receives the very same frame bytes (the server encodes a push
 * once), so the lean loop decodes a frame once and compares the next ones
 * with it: the load generator shares the two cores with the server, and
 * 10,000 decodes per message would skew the figures more than the server's work.
 */
import { randomBytes } from "node:crypto";
import type WebSocket from "ws";
import {
  decodeServerFrame,
  encodeClientFrame,
  type ServerBodyFrame,
  MAX_USERS_PER_OPERATION,
  newMessageId,
  GroupOperationKind,
} from "@remessenger/protocol";
import { FrameDriver, type Identity } from "../scripts/harness/frame-driver.ts";
import { changeGroup, createGroup } from "../scripts/harness/group-driver.ts";
import { startRedis } from "../scripts/harness/redis.ts";
import { startServer } from "../scripts/harness/server.ts";
import type { BenchOptions, BenchReport, Benchmark, Column } from "./benchmark.ts";
import { closeDriver, inBatches } from "./frame-pairs.ts";
import { percentile } from "./pair-load.ts";
import { cpuSeconds, ownCpuSeconds, peakRssBytes } from "./process-stats.ts";
import { killPid, track } from "./teardown.ts";

const GROUP_SIZES = [10, 100, 1_000, 10_000] as const;
const QUICK_GROUP_SIZES = [10, 100, 1_000] as const;
const PROBES = 20;
const QUICK_PROBES = 5;
const PAYLOAD_BYTES = 200;
const SETUP_CONCURRENCY = 50;
const SETUP_TIMEOUT_MS = 300_000;
/** A probe (or the group's last operation) not at every member within this is a failed row. */
const ARRIVAL_TIMEOUT_MS = 60_000;
const SERVER_STOP_TIMEOUT_MS = 15_000;
const MIB = 1024 * 1024;

type System = "sqlite" | "redis";
const SYSTEM_LABEL: Record<System, string> = { sqlite: "embedded (sqlite)", redis: "redis" };

export const groupFanout: Benchmark = {
  name: "group-fanout",
  summary: "one group message to 10 .. 10,000 member devices: durable, first and last member, server CPU",
  run: runGroupFanout,
};

/** Arrival times per (chat, seq) at the member devices; a test waits until a message reached `count` of them. */
class Arrivals {
  private readonly times = new Map<string, number[]>();
  private waiting: { key: string; count: number; resolve: () => void } | undefined;

  arrived(chatId: string, seq: number, atMs: number): void {
    const key = `${chatId}:${seq}`;
    let list = this.times.get(key);
    if (list === undefined) {
      list = [];
      this.times.set(key, list);
    }
    list.push(atMs);
    if (this.waiting?.key === key && list.length >= this.waiting.count) this.waiting.resolve();
  }

  /** The arrival times of (chat, seq) once `count` members have it; fails after ARRIVAL_TIMEOUT_MS. */
  async waitFor(chatId: string, seq: number, count: number, signal: AbortSignal): Promise<number[]> {
    const key = `${chatId}:${seq}`;
    try {
      if ((this.times.get(key)?.length ?? 0) < count) {
        const { promise, resolve, reject } = Promise.withResolvers<void>();
        this.waiting = { key, count, resolve };
        const deadline = AbortSignal.any([signal, AbortSignal.timeout(ARRIVAL_TIMEOUT_MS)]);
        const onAbort = (): void => {
          const got = this.times.get(key)?.length ?? 0;
          reject(new Error(`only ${got} of ${count} members got seq ${seq} within ${ARRIVAL_TIMEOUT_MS} ms`));
        };
        deadline.addEventListener("abort", onAbort, { once: true });
        try {
          await promise;
        } finally {
          deadline.removeEventListener("abort", onAbort);
          this.waiting = undefined;
        }
      }
      return this.times.get(key) ?? [];
    } finally {
      this.times.delete(key);
    }
  }
}

/** One frame decoded for every member that receives the same bytes. */
let lastBytes: Buffer | undefined;
let lastFrame: ServerBodyFrame | undefined;

function decodeShared(data: Buffer): ServerBodyFrame {
  if (lastBytes !== undefined && lastFrame !== undefined && data.equals(lastBytes)) return lastFrame;
  lastFrame = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  lastBytes = data;
  return lastFrame;
}

/** A member device after setup: records arrivals, acks what advanced, once per burst, as a client does. */
class Member {
  private readonly socket: WebSocket;
  private readonly arrivals: Arrivals;
  /** Per chat, the highest seq received and not acked yet. */
  private readonly toAck = new Map<string, number>();
  private isAckScheduled = false;
  errors = 0;

  constructor(socket: WebSocket, arrivals: Arrivals) {
    this.socket = socket;
    this.arrivals = arrivals;
    socket.removeAllListeners("message");
    socket.on("message", (data: Buffer) => {
      this.onData(data);
    });
  }

  private onData(data: Buffer): void {
    const atMs = performance.now();
    const { body } = decodeShared(data);
    if (body.$case === "error") this.errors += 1;
    if (body.$case !== "push" || body.value.push?.$case !== "message") return;
    const { chatId, seq } = body.value.push.value;
    this.arrivals.arrived(chatId, seq, atMs);
    if (seq > (this.toAck.get(chatId) ?? 0)) this.toAck.set(chatId, seq);
    this.scheduleAck();
  }

  private scheduleAck(): void {
    if (this.isAckScheduled) return;
    this.isAckScheduled = true;
    setImmediate(() => {
      this.isAckScheduled = false;
      if (this.socket.readyState !== this.socket.OPEN) return;
      const acks = [...this.toAck].map(([chatId, throughSeq]) => ({ chatId, throughSeq }));
      this.toAck.clear();
      this.socket.send(encodeClientFrame({ requestId: 0, request: { $case: "ack", value: { acks } } }));
    });
  }
}

interface Row {
  system: System;
  members: number;
  probes: number;
  durableMs: number | null;
  firstMs: number | null;
  lastMs: number | null;
  lastMaxMs: number | null;
  serverCpuMs: number;
  loadCpuMs: number;
  deliveriesPerSecond: number | null;
  createSeconds: number;
  rssMiB: number;
}

async function runGroupFanout(options: BenchOptions): Promise<BenchReport> {
  const sizes = options.isQuick ? QUICK_GROUP_SIZES : GROUP_SIZES;
  const probes = options.isQuick ? QUICK_PROBES : PROBES;
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const system of ["sqlite", "redis"] as const) {
    try {
      rows.push(...(await measureSystem(system, sizes, probes, options)));
    } catch (error) {
      if (options.signal.aborted) throw error;
      const line = `${SYSTEM_LABEL[system]} failed: ${error instanceof Error ? error.message : String(error)}`;
      options.log(`group-fanout: ${line}`);
      notes.push(line);
    }
  }
  notes.push(
    "One device per member, each on its own WebSocket on loopback, subscribed and acking as it receives; " +
      `${probes} messages of ${PAYLOAD_BYTES} bytes per group, sent one at a time by member 0 (each waits for every member).`,
    "durable = send → the server's answer (appended, seq given); first / last member = send → the first / the last " +
      "of the other member devices has it (median over the messages; last max = the slowest message).",
    "Each message is one append and one publish for the whole group (on Redis one SPUBLISH to the group's channel), " +
      "whatever its size; the server then writes the same encoded frame to every member's socket and takes one ack " +
      "per device (a cursor move in the store).",
    "srv CPU ms/msg = the server's CPU time (all threads; with redis-server on Redis) per group message, acks " +
      "included: the server's fan-out work. load CPU = this process (10,000 sockets receiving and acking) on the same " +
      "2 cores: the last-member times include its share.",
    "deliveries/s = (members - 1) / last-member median. create s = creating the group (CREATE + ADDs of " +
      `${MAX_USERS_PER_OPERATION}) until every member has its last operation. The bench asserts nothing about time.`,
  );
  return {
    name: "group-fanout",
    title: "Group fan-out: one message to every member device",
    columns: COLUMNS,
    rows: toRows(rows),
    notes,
  };
}

const COLUMNS: Column[] = [
  { key: "system", label: "store" },
  { key: "members", label: "member devices" },
  { key: "durable", label: "durable ms", digits: 1 },
  { key: "first", label: "first member ms", digits: 1 },
  { key: "last", label: "last member ms", digits: 1 },
  { key: "lastMax", label: "last max ms", digits: 1 },
  { key: "serverCpu", label: "srv CPU ms/msg", digits: 2 },
  { key: "loadCpu", label: "load CPU ms/msg", digits: 2 },
  { key: "rate", label: "deliveries/s" },
  { key: "create", label: "create s", digits: 1 },
  { key: "rss", label: "server RSS MiB" },
];

function toRows(rows: Row[]): BenchReport["rows"] {
  return rows.map((r) => ({
    system: SYSTEM_LABEL[r.system],
    members: r.members,
    durable: r.durableMs,
    first: r.firstMs,
    last: r.lastMs,
    lastMax: r.lastMaxMs,
    serverCpu: r.serverCpuMs,
    loadCpu: r.loadCpuMs,
    rate: r.deliveriesPerSecond,
    create: r.createSeconds,
    rss: Math.round(r.rssMiB),
  }));
}

function median(values: number[]): number | null {
  return percentile(Float64Array.from(values).sort(), 0.5);
}

async function measureSystem(
  system: System,
  sizes: readonly number[],
  probes: number,
  options: BenchOptions,
): Promise<Row[]> {
  const redis = system === "redis" ? await startRedis() : undefined;
  const untrackRedis =
    redis === undefined
      ? () => undefined
      : track(
          "redis-server",
          () => redis.stop(),
          () => undefined,
        );
  try {
    const server = await startServer(redis === undefined ? {} : { redisUrl: redis.url });
    const pids = [server.pid, redis?.pid].filter((pid) => pid !== undefined);
    const stopServer = async (): Promise<void> => {
      const timer = setTimeout(() => killPid(server.pid), SERVER_STOP_TIMEOUT_MS);
      await server.cleanup();
      clearTimeout(timer);
    };
    const untrackServer = track("server", stopServer, () => killPid(server.pid));
    const drivers: FrameDriver[] = [];
    try {
      const count = Math.max(...sizes);
      options.log(`group-fanout: ${SYSTEM_LABEL[system]}: ${count} devices register and subscribe...`);
      const deadline = AbortSignal.any([options.signal, AbortSignal.timeout(SETUP_TIMEOUT_MS)]);
      const identities: Identity[] = await inBatches(count, SETUP_CONCURRENCY, deadline, async (index) => {
        const driver = await FrameDriver.connect(server.url);
        drivers[index] = driver;
        const identity = await driver.register(`member-${index}`);
        if (index > 0) {
          await driver.subscribe();
          await driver.waitFor(() => driver.isSynced(), "sync_complete");
        }
        return identity;
      });
      const sender = drivers[0];
      const senderId = identities[0];
      if (sender === undefined || senderId === undefined) throw new Error("no sender");
      const arrivals = new Arrivals();
      const members = drivers.slice(1).map((driver) => new Member(driver.socket, arrivals));
      const rows: Row[] = [];
      for (const size of sizes) {
        options.signal.throwIfAborted();
        options.log(`group-fanout: ${SYSTEM_LABEL[system]}: a group of ${size}...`);
        const createdAt = performance.now();
        const others = identities.slice(1, size).map((id) => id.userId);
        const first = others.slice(0, MAX_USERS_PER_OPERATION - 1);
        const group = await createGroup(sender, senderId, first, `fan-out ${size}`);
        let lastSeq = 1;
        await arrivals.waitFor(group.chatId, lastSeq, first.length, options.signal);
        for (let at = first.length; at < others.length; at += MAX_USERS_PER_OPERATION) {
          const chunk = others.slice(at, at + MAX_USERS_PER_OPERATION);
          const answer = await changeGroup(sender, senderId, group, GroupOperationKind.GROUP_OPERATION_KIND_ADD, chunk);
          lastSeq = answer.seq;
          // Every member so far gets the ADD; the new ones start with it.
          await arrivals.waitFor(group.chatId, lastSeq, at + chunk.length, options.signal);
        }
        const createSeconds = (performance.now() - createdAt) / 1000;

        const payload = new Uint8Array(randomBytes(PAYLOAD_BYTES));
        const durable: number[] = [];
        const firsts: number[] = [];
        const lasts: number[] = [];
        const cpuBefore = pids.reduce((sum: number, pid) => sum + cpuSeconds(pid), 0);
        const ownBefore = ownCpuSeconds();
        for (let probe = 0; probe < probes; probe += 1) {
          options.signal.throwIfAborted();
          const sentAt = performance.now();
          const answer = await sender.call({
            $case: "sendMessage",
            value: { chatId: group.chatId, messageId: newMessageId(), payload, devicePayloads: [] },
          });
          durable.push(performance.now() - sentAt);
          if (answer.seq !== lastSeq + 1) throw new Error(`probe got seq ${answer.seq}, expected ${lastSeq + 1}`);
          lastSeq = answer.seq;
          const times = await arrivals.waitFor(group.chatId, lastSeq, size - 1, options.signal);
          firsts.push(Math.min(...times) - sentAt);
          lasts.push(Math.max(...times) - sentAt);
        }
        const serverCpuMs = ((pids.reduce((sum: number, pid) => sum + cpuSeconds(pid), 0) - cpuBefore) * 1000) / probes;
        const loadCpuMs = ((ownCpuSeconds() - ownBefore) * 1000) / probes;
        const lastMs = median(lasts);
        rows.push({
          system,
          members: size,
          probes,
          durableMs: median(durable),
          firstMs: median(firsts),
          lastMs,
          lastMaxMs: Math.max(...lasts),
          serverCpuMs,
          loadCpuMs,
          deliveriesPerSecond: lastMs === null || lastMs === 0 ? null : Math.round(((size - 1) * 1000) / lastMs),
          createSeconds,
          rssMiB: peakRssBytes(server.pid) / MIB,
        });
        const errors = members.reduce((sum, m) => sum + m.errors, 0);
        if (errors > 0) options.log(`group-fanout: members got ${errors} error frames`);
        options.log(
          `group-fanout: ${SYSTEM_LABEL[system]}: ${size} members: last member ${lastMs?.toFixed(1) ?? "-"} ms, ` +
            `server ${serverCpuMs.toFixed(2)} ms CPU per message`,
        );
      }
      return rows;
    } finally {
      await Promise.all(drivers.map((driver) => closeDriver(driver)));
      untrackServer();
      await stopServer();
    }
  } finally {
    untrackRedis();
    await redis?.stop();
  }
}
