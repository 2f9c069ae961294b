/**
 * DNS tunnel: how much of each query and answer is payload, how fast the
 * tunnel moves messages, and how that compares with dns2tcp (Debian's),
 * both through the same Unbound in the same run.
 *
 * Layout: Unbound runs in a network namespace (dns2tcpc only speaks to port
 * 53, which is free there), stubbing our zone to our gateway and dns2tcp's
 * zone to dns2tcpd, both on the host side of a veth pair. For the 100 ms
 * rows a userspace relay (this kernel has no netem) adds 50 ms each way
 * between Unbound and both gateways. QNAME minimisation is off for both
 * (dns2tcp does not survive it; ours does, see the tests).
 *
 * Ours, per pipe (DoH to Unbound's HTTP/2 listener, plain DNS to its UDP
 * port) and added RTT:
 * - efficiency up: upstream chunk bytes per data query ÷ what a name of 253
 *   characters under the zone can carry (150 B for t.example);
 * - efficiency down: chunk bytes per data answer ÷ what a 1232-byte answer
 *   to that question can carry with a compressed owner name;
 * - goodput up: message payload bytes a second, one device sending 16 KiB
 *   messages (4 in flight) until the server has them all;
 * - goodput down: payload bytes a second the receiving device gets, from the
 *   first push to the last, while another device sends over WebSocket;
 * - p50/p95 latency: a 200-byte message from one tunnel device to another.
 * dns2tcp: bytes a second through `dns2tcpc -l -` (stdin/stdout), up to a
 * TCP sink and down from a TCP source, first byte to last.
 *
 * CPU per MB, over the same windows: what the processes on the path used
 * (user + system, /proc) per megabyte of payload. Ours: the server (gateway
 * and messaging), Unbound and this process (tunnel clients, and the
 * WebSocket sender in the down window); dns2tcp: dns2tcpd, Unbound and
 * dns2tcpc. It does not depend on how busy the rest of the machine is, which
 * the goodput at 0 ms added RTT does (everything there is CPU-bound).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { NodeDnsExchange, NodeHttp2DohExchange } from "@remessenger/client-core/node";
import { type TunnelStats, dnsTunnelTransportFactory, webSocketTransportFactory } from "@remessenger/client-core";
import { newMessageId, ChatKind, CreateChatRequest, SendMessageRequest } from "@remessenger/protocol";
import { startDelayRelay, type DelayRelay } from "../scripts/harness/delay-relay.ts";
import { FrameDriver, type Identity } from "../scripts/harness/frame-driver.ts";
import { makeNetnsLab, type NetnsLab } from "../scripts/harness/netns.ts";
import {
  type Address,
  ensureResolverPackages,
  startUnbound,
  type RunningResolver,
} from "../scripts/harness/resolvers.ts";
import { startServer, type TestServer } from "../scripts/harness/server.ts";
import { type AnnouncedTunnel, announcedTunnel } from "../scripts/harness/tunnel.ts";
import type { BenchOptions, BenchReport, Benchmark, Cell } from "./benchmark.ts";
import { cpuSeconds, ownCpuSeconds } from "./process-stats.ts";
import { killPid, track } from "./teardown.ts";
import { TunnelFrameClient } from "./tunnel-frame-client.ts";

const ZONE = "t.example";
const DNS2TCP_ZONE = "d.example";
const MESSAGE_BYTES = 16 * 1024;
const LATENCY_MESSAGE_BYTES = 200;
const KIB = 1024;

interface Plan {
  upBytes: number;
  downBytes: number;
  latencyMessages: number;
  dns2tcpUpBytes: number;
  dns2tcpDownBytes: number;
}

function planFor(rttMs: number, isQuick: boolean): Plan {
  const scale = isQuick ? 0.25 : 1;
  const slow = rttMs > 0;
  return {
    upBytes: Math.round((slow ? 512 : 2048) * KIB * scale),
    downBytes: Math.round((slow ? 1024 : 4096) * KIB * scale),
    latencyMessages: isQuick ? 10 : 40,
    dns2tcpUpBytes: Math.round((slow ? 64 : 2048) * KIB * scale),
    dns2tcpDownBytes: Math.round((slow ? 16 : 4096) * KIB * scale),
  };
}

interface Row {
  rttMs: number;
  pipe: string;
  effUp: number | null;
  effDown: number | null;
  upBps: number;
  downBps: number;
  cpuUp: number | null;
  cpuDown: number | null;
  p50: number | null;
  p95: number | null;
  upRatio: number | null;
  downRatio: number | null;
}

/** CPU seconds the given processes (and this one, when `withSelf`) used since it was made. */
function cpuMeter(pids: readonly number[], withSelf: boolean): () => number {
  const total = (): number => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) + (withSelf ? ownCpuSeconds() : 0);
  const start = total();
  return () => total() - start;
}

/** CPU seconds per megabyte of payload, or null without payload. */
function perMegabyte(cpu: number, bytes: number): number | null {
  return bytes > 0 ? cpu / (bytes / 1e6) : null;
}

export const dnsTunnel: Benchmark = {
  name: "dns-tunnel",
  summary: "DNS tunnel (DoH, plain DNS) through Unbound vs dns2tcp: efficiency, goodput, latency at 0/100 ms RTT",
  run,
};

async function run({ isQuick, signal, log }: BenchOptions): Promise<BenchReport> {
  ensureResolverPackages();
  const loadAtStart = loadavg()[0] ?? 0;
  const lab = makeNetnsLab();
  const untrackLab = track(
    "network namespace",
    () => {
      lab.cleanup();
      return Promise.resolve();
    },
    () => {
      lab.cleanup();
    },
  );
  const cleanups: Array<() => Promise<void>> = [];
  const rows: Row[] = [];
  try {
    const server = await startServer({
      extraArgs: ["--dns-zone", ZONE, "--dns-listen", `${lab.hostAddress}:0`, "--dns-rate-limit", "0"],
    });
    cleanups.push(() => server.cleanup());
    const gateway = announcedTunnel(server.logs);
    const sink = await startSink(lab.hostAddress);
    cleanups.push(() => sink.stop());
    const dns2tcpd = await startDns2tcpd(lab.hostAddress, sink);
    cleanups.push(() => dns2tcpd.stop());
    const sender = await FrameDriver.connect(server.url);
    const receiver = await FrameDriver.connect(server.url);
    cleanups.push(() => {
      sender.socket.close();
      receiver.socket.close();
      return Promise.resolve();
    });
    const alice = await sender.register("alice");
    const bob = await receiver.register("bob");
    const { chat } = await sender.call({
      $case: "createChat",
      value: CreateChatRequest.fromPartial({ kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [bob.userId] }),
    });
    if (chat === undefined) throw new Error("no chat");
    const context: Context = { server, gateway, lab, sender, alice, bob, chatId: chat.chatId, signal, log };
    {
      // Reference: the same latency over the WebSocket, to tell the tunnel's share from the server's.
      const ws = webSocketTransportFactory({ serverUrl: server.url });
      const listener = await TunnelFrameClient.login(ws, bob, signal);
      await listener.call({ $case: "subscribe", value: {} });
      await drainBacklog(listener);
      const talker = await TunnelFrameClient.login(ws, alice, signal);
      const latencies = await measureLatency(context, talker, listener, planFor(0, isQuick).latencyMessages);
      talker.close();
      listener.close();
      log(`  WebSocket reference: p50 ${percentile(latencies, 0.5)} ms`);
      rows.push({
        rttMs: 0,
        pipe: "ours WebSocket (reference)",
        effUp: null,
        effDown: null,
        upBps: Number.NaN,
        downBps: Number.NaN,
        cpuUp: null,
        cpuDown: null,
        p50: percentile(latencies, 0.5),
        p95: percentile(latencies, 0.95),
        upRatio: null,
        downRatio: null,
      });
    }

    for (const rttMs of [0, 100]) {
      if (signal.aborted) break;
      const plan = planFor(rttMs, isQuick);
      const relays: DelayRelay[] = [];
      const via = async (target: Address): Promise<Address> => {
        if (rttMs === 0) return target;
        const relay = await startDelayRelay({ listenHost: lab.hostAddress, target, oneWayMs: rttMs / 2 });
        relays.push(relay);
        return relay;
      };
      const unbound = await startUnbound({
        zone: ZONE,
        gateway: await via(gateway.dns),
        netns: lab.name,
        listenHost: lab.innerAddress,
        qnameMinimisation: false,
        extraInterfaces: ["127.0.0.1@53"],
        extraStubs: [{ zone: DNS2TCP_ZONE, address: await via(dns2tcpd.address) }],
      });
      const untrackUnbound = track(
        "unbound",
        () => unbound.stop(),
        () => {
          killPid(unbound.pid);
        },
      );
      try {
        log(`dns2tcp at +${rttMs} ms`);
        const peer = await measureDns2tcp(lab, sink, plan, signal, [dns2tcpd.pid, unbound.pid], log);
        log(`  dns2tcp: up ${kbps(peer.upBps)} kB/s, down ${kbps(peer.downBps)} kB/s`);
        for (const pipe of ["doh", "dns"] as const) {
          if (signal.aborted) break;
          log(`ours over ${pipe} at +${rttMs} ms`);
          const ours = await measureOurs(context, unbound, pipe, plan, [server.pid, unbound.pid]);
          log(
            `  ours: up ${kbps(ours.upBps)} kB/s, down ${kbps(ours.downBps)} kB/s, p50 ${ours.p50} ms; ${ours.detail}`,
          );
          rows.push({
            rttMs,
            pipe: `ours ${pipe === "doh" ? "DoH" : "plain DNS"}`,
            ...ours,
            upRatio: ours.upBps / peer.upBps,
            downRatio: ours.downBps / peer.downBps,
          });
        }
        rows.push({
          rttMs,
          pipe: "dns2tcp (plain DNS)",
          effUp: null,
          effDown: null,
          upBps: peer.upBps,
          downBps: peer.downBps,
          cpuUp: peer.cpuUp,
          cpuDown: peer.cpuDown,
          p50: null,
          p95: null,
          upRatio: null,
          downRatio: null,
        });
      } finally {
        untrackUnbound();
        await unbound.stop();
        for (const relay of relays) await relay.stop();
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
    lab.cleanup();
    untrackLab();
  }
  return {
    name: "dns-tunnel",
    title: "DNS tunnel through Unbound 1.17 (QNAME minimisation off) vs dns2tcp 0.5.2, same resolver, same run",
    columns: [
      { key: "rtt", label: "added RTT ms" },
      { key: "pipe", label: "pipe" },
      { key: "effUp", label: "eff. up", digits: 2 },
      { key: "effDown", label: "eff. down", digits: 2 },
      { key: "up", label: "up kB/s", digits: 1 },
      { key: "down", label: "down kB/s", digits: 1 },
      { key: "cpuUp", label: "CPU s/MB up", digits: 2 },
      { key: "cpuDown", label: "CPU s/MB down", digits: 2 },
      { key: "p50", label: "p50 ms" },
      { key: "p95", label: "p95 ms" },
      { key: "upRatio", label: "up ÷ dns2tcp", digits: 1 },
      { key: "downRatio", label: "down ÷ dns2tcp", digits: 1 },
    ],
    rows: rows.map((row): Record<string, Cell> => ({
      rtt: row.rttMs,
      pipe: row.pipe,
      effUp: row.effUp,
      effDown: row.effDown,
      up: Number.isNaN(row.upBps) ? null : row.upBps / 1000,
      down: Number.isNaN(row.downBps) ? null : row.downBps / 1000,
      cpuUp: row.cpuUp,
      cpuDown: row.cpuDown,
      p50: row.p50,
      p95: row.p95,
      upRatio: row.upRatio,
      downRatio: row.downRatio,
    })),
    notes: [
      `Efficiency: tunnel payload per data query ÷ the ${ZONE} maximum for a 253-character name (150 B), and per data answer ÷ the maximum of a 1232-byte answer to that question (owner compressed). dns2tcp measured here earlier: 0.61 up, 0.63 down (dns-lab notes).`,
      `Goodput is message payload (16 KiB messages, E2E-sized opaque bytes) per second; up = until the server answered every send, down = first to last push at the receiver. dns2tcp: raw TCP bytes through dns2tcpc's stdin/stdout.`,
      "Latency: 200-byte messages between two tunnel devices on the same pipe, one every 250 ms, send to receive.",
      "Added RTT: a userspace relay holds every packet 50 ms each way between Unbound and both gateways (no netem on this kernel).",
      `CPU s/MB: CPU seconds of the processes on the path per megabyte of payload in the goodput windows (ours: server, Unbound, the benchmark's clients; dns2tcp: dns2tcpd, Unbound, dns2tcpc). At 0 ms added RTT everything is CPU-bound, so goodput there follows the CPU each run gets: load average ${loadAtStart.toFixed(1)} at the start and ${(loadavg()[0] ?? 0).toFixed(1)} at the end, on ${availableParallelism()} cores.`,
    ],
  };
}

interface Context {
  server: TestServer;
  gateway: AnnouncedTunnel;
  lab: NetnsLab;
  sender: FrameDriver;
  alice: Identity;
  bob: Identity;
  chatId: string;
  signal: AbortSignal;
  log: (line: string) => void;
}

interface OursResult {
  effUp: number | null;
  effDown: number | null;
  upBps: number;
  downBps: number;
  cpuUp: number | null;
  cpuDown: number | null;
  p50: number | null;
  p95: number | null;
  /** For the progress log: what the tunnel did. */
  detail: string;
}

function factoryFor(
  context: Context,
  resolver: RunningResolver,
  pipe: "doh" | "dns",
): ReturnType<typeof dnsTunnelTransportFactory> {
  const ca = readFileSync(resolver.caFile, "utf8");
  return dnsTunnelTransportFactory({
    kind: pipe,
    exchanges: [
      pipe === "doh" ? new NodeHttp2DohExchange({ url: resolver.dohUrl, ca }) : new NodeDnsExchange(resolver.dns),
    ],
    tunnel: { zone: context.gateway.zone, publicKey: context.gateway.publicKey },
  });
}

function ratio(stats: TunnelStats, which: "up" | "down"): number | null {
  if (which === "up")
    return stats.upstreamCapacityBytes === 0 ? null : stats.upstreamPayloadBytes / stats.upstreamCapacityBytes;
  return stats.downstreamCapacityBytes === 0 ? null : stats.downstreamPayloadBytes / stats.downstreamCapacityBytes;
}

async function measureOurs(
  context: Context,
  resolver: RunningResolver,
  pipe: "doh" | "dns",
  plan: Plan,
  pathPids: readonly number[],
): Promise<OursResult> {
  const { signal, chatId } = context;
  // Upstream: Alice sends 16 KiB messages over the tunnel, 4 in flight.
  const up = await TunnelFrameClient.login(factoryFor(context, resolver, pipe), context.alice, signal);
  const count = Math.max(1, Math.round(plan.upBytes / MESSAGE_BYTES));
  const upStarted = performance.now();
  const upCpu = cpuMeter(pathPids, true);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && !signal.aborted) {
      next += 1;
      await up.call({
        $case: "sendMessage",
        value: SendMessageRequest.fromPartial({
          chatId,
          messageId: newMessageId(),
          payload: new Uint8Array(MESSAGE_BYTES).fill(next & 0xff),
        }),
      });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const upBps = (count * MESSAGE_BYTES) / ((performance.now() - upStarted) / 1000);
  const cpuUp = perMegabyte(upCpu(), count * MESSAGE_BYTES);
  const upStats = statsOf(up);
  up.close();

  // Downstream: Bob subscribes over the tunnel; Alice sends over WebSocket.
  const down = await TunnelFrameClient.login(factoryFor(context, resolver, pipe), context.bob, signal);
  let firstAt = 0;
  let lastAt = 0;
  let gotBytes = 0;
  let downCpu: (() => number) | undefined;
  let cpuDownSeconds = 0;
  const downCount = Math.max(1, Math.round(plan.downBytes / MESSAGE_BYTES));
  let got = 0;
  const allIn = Promise.withResolvers<void>();
  down.onMessage = (message) => {
    if (message.senderUserId === context.bob.userId) return;
    if (message.payload.length !== MESSAGE_BYTES) return;
    const now = performance.now();
    if (got === 0) {
      firstAt = now;
      downCpu = cpuMeter(pathPids, true);
    }
    cpuDownSeconds = downCpu?.() ?? 0;
    lastAt = now;
    got += 1;
    gotBytes += message.payload.length;
    down.ack(message.chatId, message.seq);
    if (got >= downCount) allIn.resolve();
  };
  await down.call({ $case: "subscribe", value: {} });
  await drainBacklog(down);
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < downCount; i += 1) {
    sends.push(
      context.sender.call({
        $case: "sendMessage",
        value: SendMessageRequest.fromPartial({
          chatId,
          messageId: newMessageId(),
          payload: new Uint8Array(MESSAGE_BYTES).fill(i & 0xff),
        }),
      }),
    );
  }
  await withDeadline(allIn.promise, 600_000, `${got} of ${downCount} messages down`);
  await Promise.all(sends);
  const downBps = got <= 1 ? 0 : ((gotBytes - MESSAGE_BYTES) / (lastAt - firstAt)) * 1000;
  const downStats = statsOf(down);

  // Latency: Alice (tunnel) → Bob (tunnel), small messages at a chat's pace.
  const talker = await TunnelFrameClient.login(factoryFor(context, resolver, pipe), context.alice, signal);
  const latencies = await measureLatency(context, talker, down, plan.latencyMessages);
  talker.close();
  down.close();
  latencies.sort((a, b) => a - b);
  return {
    effUp: ratio(upStats, "up"),
    effDown: ratio(downStats, "down"),
    upBps,
    downBps,
    cpuUp,
    // As the goodput, from the first message down to the last.
    cpuDown: got <= 1 ? null : perMegabyte(cpuDownSeconds, gotBytes - MESSAGE_BYTES),
    p50: percentile(latencies, 0.5),
    p95: percentile(latencies, 0.95),
    detail: `up ${describeStats(upStats)}; down ${describeStats(downStats)}`,
  };
}

function describeStats(stats: TunnelStats): string {
  return `${stats.dataQueries} data + ${stats.pollQueries} polls, ${stats.failedQueries} failed, ${stats.dataAnswers} data answers`;
}

/** Latency of small messages from `talker` to `listener` (subscribed), one every 250 ms; sorted. */
async function measureLatency(
  context: Context,
  talker: TunnelFrameClient,
  listener: TunnelFrameClient,
  count: number,
): Promise<number[]> {
  const { chatId, signal } = context;
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  const done = Promise.withResolvers<void>();
  const talkerSends: Promise<unknown>[] = [];
  listener.onMessage = (message) => {
    listener.ack(message.chatId, message.seq);
    if (message.payload.length !== LATENCY_MESSAGE_BYTES) return;
    const at = sentAt.get(message.payload[0] ?? 0);
    if (at !== undefined) latencies.push(performance.now() - at);
    if (latencies.length >= count) done.resolve();
  };
  for (let i = 0; i < count && !signal.aborted; i += 1) {
    sentAt.set(i, performance.now());
    const payload = new Uint8Array(LATENCY_MESSAGE_BYTES);
    payload[0] = i;
    talkerSends.push(
      talker.call({
        $case: "sendMessage",
        value: SendMessageRequest.fromPartial({ chatId, messageId: newMessageId(), payload }),
      }),
    );
    await sleep(250);
  }
  await withDeadline(done.promise, 60_000, `${latencies.length} latency samples`);
  await Promise.all(talkerSends);
  return latencies.sort((x, y) => x - y);
}

function statsOf(client: TunnelFrameClient): TunnelStats {
  return (client.transport as unknown as { stats: TunnelStats }).stats;
}

/** Waits until no push arrived for a moment: the backlog of earlier rows is through. */
async function drainBacklog(client: TunnelFrameClient): Promise<void> {
  const previous = client.onMessage;
  let last = performance.now();
  client.onMessage = (message) => {
    last = performance.now();
    client.ack(message.chatId, message.seq);
  };
  const deadline = performance.now() + 30_000;
  while (performance.now() - last < 1_500 && performance.now() < deadline) await sleep(100);
  client.onMessage = previous;
}

interface Sink {
  port: number;
  host: string;
  /** Resolves when `bytes` bytes arrived on one connection; rejects after the deadline. */
  expect(bytes: number, timeoutMs: number): Promise<{ firstAt: number; lastAt: number }>;
  /** The next connection to the source port gets `bytes` bytes. */
  sourcePort: number;
  setSourceBytes(bytes: number): void;
  stop(): Promise<void>;
}

async function startSink(host: string): Promise<Sink> {
  let waiter: { bytes: number; resolve: (value: { firstAt: number; lastAt: number }) => void } | undefined;
  const sinkServer = net.createServer((socket) => {
    let total = 0;
    let firstAt = 0;
    socket.on("data", (chunk) => {
      if (total === 0) firstAt = performance.now();
      total += chunk.length;
      if (waiter !== undefined && total >= waiter.bytes) {
        waiter.resolve({ firstAt, lastAt: performance.now() });
        waiter = undefined;
      }
    });
    socket.on("error", () => undefined);
  });
  let sourceBytes = 0;
  const sourceServer = net.createServer((socket) => {
    socket.on("error", () => undefined);
    socket.end(Buffer.alloc(sourceBytes, 0x5a));
  });
  const listen = (server: net.Server): Promise<number> =>
    new Promise((resolve) => {
      server.listen(0, host, () => {
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  const port = await listen(sinkServer);
  const sourcePort = await listen(sourceServer);
  return {
    port,
    host,
    sourcePort,
    setSourceBytes: (bytes) => {
      sourceBytes = bytes;
    },
    expect: (bytes, timeoutMs) =>
      withDeadline(
        new Promise((resolve) => {
          waiter = { bytes, resolve };
        }),
        timeoutMs,
        `dns2tcp carrying ${bytes} bytes`,
      ),
    stop: async () => {
      await Promise.all([
        new Promise<void>((resolve) => sinkServer.close(() => resolve())),
        new Promise<void>((resolve) => sourceServer.close(() => resolve())),
      ]);
    },
  };
}

async function startDns2tcpd(
  host: string,
  sink: Sink,
): Promise<{ address: Address; pid: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-dns2tcpd-"));
  const port = await freeUdpPort(host);
  const config = join(dir, "dns2tcpd.conf");
  writeFileSync(
    config,
    `listen = ${host}\nport = ${port}\ndomain = ${DNS2TCP_ZONE}\nresources = sink:${host}:${sink.port} , source:${host}:${sink.sourcePort}\n`,
  );
  // stdin stays an open pipe: in the foreground dns2tcpd polls stdin, and on /dev/null (EOF at once) it spins a core.
  const child = spawn("/usr/bin/dns2tcpd", ["-F", "-f", config], { stdio: ["pipe", "pipe", "pipe"] });
  const untrack = track(
    "dns2tcpd",
    () => Promise.resolve(),
    () => {
      child.kill("SIGKILL");
    },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("dns2tcpd did not start")), 10_000);
    const onData = (chunk: Buffer): void => {
      if (chunk.toString().includes("Starting Server")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`dns2tcpd exited with ${code}`));
    });
  });
  return {
    address: { host, port },
    pid: child.pid ?? 0,
    stop: () => {
      child.kill("SIGTERM");
      untrack();
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

/** A dns2tcpc in the lab, reading stdin and writing stdout. */
interface Dns2tcpc {
  child: ChildProcess;
  /** Rejects, with what it printed, when it exits before stop(): the transfer fails instead of an EPIPE. */
  exited: Promise<never>;
  stop(): void;
}

function startDns2tcpc(lab: NetnsLab, resource: string): Dns2tcpc {
  const child = spawn(
    "/usr/sbin/ip",
    ["netns", "exec", lab.name, "/usr/bin/dns2tcpc", "-z", DNS2TCP_ZONE, "-r", resource, "-l", "-", "127.0.0.1"],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  const untrack = track(
    "dns2tcpc",
    () => Promise.resolve(),
    () => {
      child.kill("SIGKILL");
    },
  );
  let printed = "";
  child.stderr?.on("data", (data: Buffer) => {
    printed = `${printed}${data.toString()}`.slice(-2_000);
  });
  // Writes to a client that died fail here; its exit says why.
  child.stdin?.on("error", () => undefined);
  let isStopped = false;
  const exited = new Promise<never>((_, reject) => {
    child.once("exit", (code, exitSignal) => {
      if (!isStopped) reject(new Error(`dns2tcpc (${resource}) exited (${code ?? exitSignal}): ${printed.trim()}`));
    });
  });
  exited.catch(() => undefined);
  return {
    child,
    exited,
    stop: () => {
      isStopped = true;
      child.kill("SIGTERM");
      untrack();
    },
  };
}

/** Tries a dns2tcp transfer up to 3 times: under load dns2tcpc sometimes gives up on its session at once. */
async function withRetries<T>(what: string, log: (line: string) => void, attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (tries >= 3) throw error;
      log(`  ${what} failed, again: ${String(error)}`);
    }
  }
}

async function measureDns2tcp(
  lab: NetnsLab,
  sink: Sink,
  plan: Plan,
  signal: AbortSignal,
  pathPids: readonly number[],
  log: (line: string) => void,
): Promise<{ upBps: number; downBps: number; cpuUp: number | null; cpuDown: number | null }> {
  // Up: bytes into dns2tcpc's stdin until the sink has them all.
  const up = await withRetries("dns2tcp up", log, async () => {
    const client = startDns2tcpc(lab, "sink");
    try {
      const arrived = sink.expect(plan.dns2tcpUpBytes, 300_000);
      // A failed attempt leaves it pending; its deadline must not become an unhandled rejection.
      arrived.catch(() => undefined);
      const upCpu = cpuMeter([...pathPids, client.child.pid ?? 0], false);
      const chunk = Buffer.alloc(4096, 0x41);
      for (let sent = 0; sent < plan.dns2tcpUpBytes && !signal.aborted; sent += chunk.length) {
        if (!client.child.stdin?.write(chunk)) {
          await Promise.race([new Promise((resolve) => client.child.stdin?.once("drain", resolve)), client.exited]);
        }
      }
      const window = await Promise.race([arrived, client.exited]);
      return { ...window, cpuUp: perMegabyte(upCpu(), plan.dns2tcpUpBytes) };
    } finally {
      client.stop();
    }
  });
  // Down: the source sends, we read dns2tcpc's stdout.
  sink.setSourceBytes(plan.dns2tcpDownBytes);
  const down = await withRetries("dns2tcp down", log, async () => {
    const client = startDns2tcpc(lab, "source");
    try {
      let total = 0;
      let firstAt = 0;
      let lastAt = 0;
      let downCpu: (() => number) | undefined;
      let cpuDownSeconds = 0;
      const done = Promise.withResolvers<void>();
      client.child.stdout?.on("data", (data: Buffer) => {
        if (total === 0) {
          firstAt = performance.now();
          downCpu = cpuMeter([...pathPids, client.child.pid ?? 0], false);
        }
        total += data.length;
        cpuDownSeconds = downCpu?.() ?? 0;
        lastAt = performance.now();
        if (total >= plan.dns2tcpDownBytes) done.resolve();
      });
      await withDeadline(
        Promise.race([done.promise, client.exited]),
        300_000,
        `dns2tcp down: ${total} of ${plan.dns2tcpDownBytes} bytes`,
      );
      return { downBps: (total / (lastAt - firstAt)) * 1000, cpuDown: perMegabyte(cpuDownSeconds, total) };
    } finally {
      client.stop();
    }
  });
  return {
    upBps: (plan.dns2tcpUpBytes / (up.lastAt - up.firstAt)) * 1000,
    downBps: down.downBps,
    cpuUp: up.cpuUp,
    cpuDown: down.cpuDown,
  };
}

function freeUdpPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    import("node:dgram").then(({ default: dgram }) => {
      const socket = dgram.createSocket("udp4");
      socket.once("error", reject);
      socket.bind(0, host, () => {
        const { port } = socket.address();
        socket.close(() => resolve(port));
      });
    }, reject);
  });
}

function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
}

function kbps(bytesPerSecond: number): string {
  return (bytesPerSecond / 1000).toFixed(1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
