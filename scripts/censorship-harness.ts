/**
 * The censorship harness: two real clients keep a conversation going in the
 * network lab (scripts/harness/netns-lab.ts) while a censor switches real
 * packet filters on and off; then it checks that nothing was lost, nothing
 * arrived twice, every sender's order held, what the clients reported matched
 * what was really blocked, and that they climbed back to WebSocket.
 *
 *   npm run harness -- --scenario drop-ws --messages 300
 *
 * The last line is the summary: delivered/sent, duplicates, order, failover
 * and climb-back times.
 */
import { type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { type Censorship, LAB_ADDRESS, type Lab, startLab } from "./harness/netns-lab.ts";
import type { LabClientConfig } from "./harness/lab-client.ts";
import { type RunningResolver, startUnbound } from "./harness/resolvers.ts";
import { type TestServer, startServer } from "./harness/server.ts";
import { announcedTunnel } from "./harness/tunnel.ts";
import { RUNG_STABLE_AFTER_MS } from "@remessenger/client-core";

const SERVER_PORT = 8080;
const SERVER_URL = `http://${LAB_ADDRESS.server}:${SERVER_PORT}`;
/** "GET /v1/ws": the first bytes of a WebSocket upgrade to our server; DPI sees this much. */
const WEBSOCKET_UPGRADE_PREFIX = "0x474554202f76312f7773";
const WS_MARK = "0x1";
const TUNNEL_ZONE = "t.example";

/** One step of a block: filters applied together, and what the client must make of them. */
export interface Stage {
  /** For reports: what happens, e.g. "WebSocket dropped". */
  label: string;
  censorship: Censorship;
  /** Transports a client must not report as connected once this stage has bitten. */
  blocked: readonly string[];
  /** Where the client must get to during this stage (unset: anywhere not blocked). */
  landsOn?: string;
}

export interface Scenario {
  description: string;
  /** Applied in turn, each for `blockMs` (a later stage repeats what an earlier one blocked); then lifted. */
  stages: readonly Stage[];
  blockMs: number;
}

const TCP_TO_SERVER = [
  `ip daddr ${LAB_ADDRESS.server} tcp dport ${SERVER_PORT} drop`,
  `ip saddr ${LAB_ADDRESS.server} tcp sport ${SERVER_PORT} drop`,
];
/** DoH reaches the resolver over TCP; plain DNS stays on UDP. */
const TCP_TO_RESOLVER = [
  `ip daddr ${LAB_ADDRESS.resolver} meta l4proto tcp drop`,
  `ip saddr ${LAB_ADDRESS.resolver} meta l4proto tcp drop`,
];

export const SCENARIOS: Record<string, Scenario> = {
  "drop-ws": {
    description: "a censor silently drops every WebSocket flow (DPI on the upgrade), new and open ones",
    stages: [
      {
        label: "WebSocket dropped",
        censorship: { nftRules: [`ct mark ${WS_MARK} drop`] },
        blocked: ["websocket"],
        landsOn: "https",
      },
    ],
    blockMs: 12_000,
  },
  "reset-ws": {
    description: "DPI lets the WebSocket upgrade through, then resets the connection",
    stages: [
      {
        label: "WebSocket reset",
        censorship: { nftRules: [`ct mark ${WS_MARK} ct reply packets > 4 reject with tcp reset`] },
        blocked: ["websocket"],
        landsOn: "https",
      },
    ],
    blockMs: 12_000,
  },
  "throttle-loss": {
    description: "the link to the client is throttled to 20 kbit/s with 30% packet loss",
    stages: [
      {
        label: "20 kbit/s, 30% loss",
        censorship: {
          rateTowardsClient: "20kbit",
          rateFromClient: "20kbit",
          nftRules: [
            `ip daddr ${LAB_ADDRESS.client} numgen random mod 100 < 30 drop`,
            `ip saddr ${LAB_ADDRESS.client} numgen random mod 100 < 30 drop`,
          ],
        },
        blocked: [],
      },
    ],
    blockMs: 15_000,
  },
  "blackhole-https": {
    description: "every TCP packet to and from the server is silently dropped (WebSocket and HTTPS); DNS still works",
    stages: [
      {
        label: "server TCP blackholed",
        censorship: { nftRules: TCP_TO_SERVER },
        blocked: ["websocket", "https"],
        landsOn: "doh",
      },
    ],
    blockMs: 15_000,
  },
  "block-doh": {
    description: "first the server's TCP is blackholed (the client goes to DoH), then the DoH resolver too",
    stages: [
      {
        label: "server TCP blackholed",
        censorship: { nftRules: TCP_TO_SERVER },
        blocked: ["websocket", "https"],
        landsOn: "doh",
      },
      {
        label: "DoH blackholed too",
        censorship: { nftRules: [...TCP_TO_SERVER, ...TCP_TO_RESOLVER] },
        blocked: ["websocket", "https", "doh"],
        landsOn: "dns",
      },
    ],
    blockMs: 15_000,
  },
  "udp53-only": {
    description: "the client may send nothing but UDP to port 53 of its resolver",
    stages: [
      {
        label: "only UDP 53 to the resolver",
        censorship: {
          nftRules: [
            `ip saddr ${LAB_ADDRESS.client} ip daddr ${LAB_ADDRESS.resolver} udp dport 53 accept`,
            `ip daddr ${LAB_ADDRESS.client} ip saddr ${LAB_ADDRESS.resolver} udp sport 53 accept`,
            `ip saddr ${LAB_ADDRESS.client} drop`,
            `ip daddr ${LAB_ADDRESS.client} drop`,
          ],
        },
        blocked: ["websocket", "https", "doh"],
        landsOn: "dns",
      },
    ],
    blockMs: 15_000,
  },
};

/** What the client said, as it said it. */
interface ClientEvent {
  type: string;
  atMs: number;
  [key: string]: unknown;
}

interface LabClient {
  name: string;
  process: ChildProcess;
  events: ClientEvent[];
  userId: string;
  send(command: Record<string, unknown>): void;
  waitFor(predicate: (event: ClientEvent) => boolean, what: string, timeoutMs: number): Promise<ClientEvent>;
}

export interface ScenarioResult {
  scenario: string;
  sent: number;
  delivered: number;
  duplicates: number;
  isOrderKept: boolean;
  /** Per client, block and stage: stage start → the first message written after it arrives. */
  failoverMs: number[];
  /** The same, labelled with the stage (for the benchmark's per-rung figures). */
  failovers: Array<{ stage: string; ms: number }>;
  /** Per client and block: block lifted → reported connected over WebSocket again. */
  climbBackMs: number[];
  /** Moments a client reported a connected transport the censor was blocking, or never got where it had to. */
  stateMismatches: string[];
  /** Connections over anything but WebSocket after a client climbed back, before the next block. */
  flapsAfterClimb: number;
  /** What a user could not have seen: a change without a state, a queued message or an offline client without a reason, a message never sent. */
  hiddenStates: string[];
}

/** How long after the block starts a client may still believe in the blocked path. */
const DETECTION_GRACE_MS = 8_000;
const DELIVERY_TIMEOUT_MS = 120_000;
const CLIMB_TIMEOUT_MS = 60_000;

export async function runScenario(
  name: string,
  messages: number,
  log: (line: string) => void = () => undefined,
  cycles = 1,
): Promise<ScenarioResult> {
  const scenario = SCENARIOS[name];
  if (scenario === undefined) throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(", ")}`);
  const lab = await startLab();
  let server: TestServer | undefined;
  let resolver: RunningResolver | undefined;
  const clients: LabClient[] = [];
  try {
    await lab.classify([`tcp dport ${SERVER_PORT} @ih,0,80 ${WEBSOCKET_UPGRADE_PREFIX} ct mark set ${WS_MARK}`]);
    server = await startServer({
      listen: `${LAB_ADDRESS.server}:${SERVER_PORT}`,
      extraArgs: [
        "--grpc-listen",
        "off",
        "--dns-zone",
        TUNNEL_ZONE,
        "--dns-listen",
        `${LAB_ADDRESS.server}:53`,
        "--dns-rate-limit",
        "0",
      ],
      wrapCommand: ["ip", "netns", "exec", lab.namespace("server")],
    });
    const tunnel = announcedTunnel(server.logs);
    // The client's resolver: a real Unbound on the resolver host, the tunnel zone stubbed to the gateway.
    resolver = await startUnbound({
      zone: TUNNEL_ZONE,
      gateway: tunnel.dns,
      netns: lab.namespace("resolver"),
      listenHost: LAB_ADDRESS.resolver,
      extraInterfaces: [`${LAB_ADDRESS.resolver}@53`],
      accessControl: [`${LAB_ADDRESS.client}/32`],
      isProbedInside: true,
    });
    const endpoints: LabEndpoints = {
      tunnel: { zone: tunnel.zone, publicKey: Buffer.from(tunnel.publicKey).toString("base64url") },
      dohUrl: resolver.dohUrl,
      resolver: { host: LAB_ADDRESS.resolver, port: 53 },
      caFile: resolver.caFile,
    };
    for (const clientName of ["alice", "bob"]) clients.push(await startLabClient(lab, clientName, endpoints));
    const [alice, bob] = clients as [LabClient, LabClient];
    log(`${name}: ${scenario.description}`);
    alice.send({ cmd: "chat", with: bob.userId });
    const chatEvent = await alice.waitFor((e) => e.type === "chat", "the chat", 30_000);
    const chatId = String(chatEvent["chatId"]);
    for (const client of clients) await waitConnected(client, "websocket", 30_000);

    // The conversation runs across every block: some before, during, between and after.
    const perSender = Math.ceil(messages / 2);
    const stages = scenario.stages.length;
    const totalMs = scenario.blockMs * (1 + cycles * (stages + 1)) + (cycles - 1) * RUNG_STABLE_AFTER_MS;
    const intervalMs = totalMs / perSender;
    const sentAtMs = new Map<string, number>();
    const sending = (async () => {
      for (let i = 1; i <= perSender; i++) {
        for (const [client, text] of [
          [alice, `alice ${i}`],
          [bob, `bob ${i}`],
        ] as const) {
          sentAtMs.set(text, Date.now());
          client.send({ cmd: "send", chatId, text });
        }
        await sleep(intervalMs);
      }
    })();
    await sleep(scenario.blockMs);
    const windows: StageWindow[] = [];
    const climbBackMs: number[] = [];
    const climbs: Array<{ client: LabClient; atMs: number; cycle: number }> = [];
    const cycleStartsMs: number[] = [];
    for (let cycle = 1; cycle <= cycles; cycle++) {
      cycleStartsMs.push(Date.now());
      for (const stage of scenario.stages) {
        const startMs = Date.now();
        await lab.censor(stage.censorship);
        log(`${name}: ${stage.label} (${cycle}/${cycles})`);
        await sleep(scenario.blockMs);
        windows.push({ stage, startMs, endMs: Date.now() });
      }
      await lab.censor({});
      const liftedMs = Date.now();
      log(`${name}: censor off`);
      for (const client of clients) {
        const event = await waitConnected(client, "websocket", CLIMB_TIMEOUT_MS, liftedMs);
        climbBackMs.push(Math.max(0, event.atMs - liftedMs));
        climbs.push({ client, atMs: event.atMs, cycle });
      }
      // Between blocks the path has time to prove itself stable again, so each block starts
      // afresh; blocks closer together are flapping, which the ladder answers with caution.
      if (cycle < cycles) await sleep(RUNG_STABLE_AFTER_MS + 1_000);
    }
    await sending;

    const expectedEach = perSender;
    await Promise.all(
      clients.map((client) =>
        client.waitFor(
          () => received(client).length >= expectedEach,
          `${client.name} to receive ${expectedEach} messages`,
          DELIVERY_TIMEOUT_MS,
        ),
      ),
    );
    const blockStart = windows[0]?.startMs ?? 0;
    // Flapping: back on WebSocket, the client connects over anything else before the next block.
    const flapsAfterClimb = climbs
      .map(({ client, atMs, cycle }) => {
        const untilMs = cycleStartsMs[cycle] ?? Date.now();
        return client.events.filter(
          (e) =>
            e.type === "state" &&
            e.state === "connected" &&
            e["transport"] !== "websocket" &&
            e.atMs > atMs &&
            e.atMs < untilMs,
        ).length;
      })
      .reduce((a, b) => a + b, 0);
    const result = { ...summarise(name, clients, messages, windows, climbBackMs, sentAtMs), flapsAfterClimb };
    for (const mismatch of result.stateMismatches.slice(0, 5)) log(`${name}: mismatch: ${mismatch}`);
    for (const hidden of result.hiddenStates.slice(0, 5)) log(`${name}: hidden: ${hidden}`);
    if (process.env["HARNESS_TRACE"] === "1") {
      for (const client of clients) {
        for (const e of client.events.filter((x) => x.type === "state")) {
          log(
            `${client.name} +${e.atMs - blockStart} ${String(e["state"])} ${String(e["transport"])} ${typeof e["reason"] === "string" ? e["reason"] : ""}`,
          );
        }
      }
    }
    return result;
  } finally {
    const dump = process.env["HARNESS_DUMP"];
    if (dump !== undefined) {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(dump, JSON.stringify(Object.fromEntries(clients.map((c) => [c.name, c.events]))));
    }
    for (const client of clients) {
      client.send({ cmd: "stop" });
      client.process.kill("SIGTERM");
    }
    await resolver?.stop().catch(() => undefined);
    await server?.cleanup().catch(() => undefined);
    await lab.close();
  }
}

/**
 * The client must always say what is going on: each outbox change has a state,
 * a message put back in the queue says why (a failed attempt is the only
 * thing that re-queues it), an offline client says why and when it retries,
 * and every message written ends up sent.
 */
function hiddenStatesOf(client: LabClient): string[] {
  const hidden: string[] = [];
  const seen = new Set<unknown>();
  const sent = new Set<unknown>();
  for (const event of client.events) {
    if (event.type === "outbox") {
      const id = event["messageId"];
      // The first event is the message entering the outbox; any later "queued" is a failed attempt.
      const isRequeued = seen.has(id);
      seen.add(id);
      if (event["state"] === undefined) hidden.push(`${client.name}: outbox change without a state`);
      else if (event["state"] === "queued" && isRequeued && typeof event["problem"] !== "string") {
        hidden.push(`${client.name}: ${String(id)} queued again without a reason`);
      } else if (event["state"] === "sent" || event["state"] === "delivered") sent.add(id);
    } else if (event.type === "state" && event.state === "offline") {
      if (typeof event["reason"] !== "string" || typeof event["nextRetryAtMs"] !== "number") {
        hidden.push(`${client.name}: offline at ${event.atMs} without a reason or a retry time`);
      }
    }
  }
  const written = client.events.filter((e) => e.type === "queued").map((e) => e["messageId"]);
  for (const id of written) if (!sent.has(id)) hidden.push(`${client.name}: ${String(id)} never reported sent`);
  return hidden;
}

function received(client: LabClient): ClientEvent[] {
  return client.events.filter((e) => e.type === "received");
}

interface StageWindow {
  stage: Stage;
  startMs: number;
  /** The next stage began, or the block was lifted. */
  endMs: number;
}

function summarise(
  name: string,
  clients: LabClient[],
  messages: number,
  windows: readonly StageWindow[],
  climbBackMs: number[],
  sentAtMs: ReadonlyMap<string, number>,
): Omit<ScenarioResult, "flapsAfterClimb"> {
  let delivered = 0;
  let duplicates = 0;
  let isOrderKept = true;
  const failovers: Array<{ stage: string; ms: number }> = [];
  const stateMismatches: string[] = [];
  for (const client of clients) {
    const texts = received(client).map((e) => String(e["text"]));
    const unique = new Set(texts);
    delivered += unique.size;
    duplicates += texts.length - unique.size;
    const numbers = texts.map((t) => Number(t.split(" ")[1]));
    if (numbers.some((n, i) => i > 0 && n <= (numbers[i - 1] ?? 0))) isOrderKept = false;
    for (const { stage, startMs, endMs } of windows) {
      // Failover: the filter went on → the first message written after it arrived.
      const next = received(client).find((e) => (sentAtMs.get(String(e["text"])) ?? 0) >= startMs);
      if (next !== undefined) failovers.push({ stage: stage.label, ms: next.atMs - startMs });
      const connectedDuring = client.events.filter(
        (e) => e.type === "state" && e.state === "connected" && e.atMs >= startMs && e.atMs <= endMs,
      );
      for (const event of connectedDuring) {
        if (event.atMs < startMs + DETECTION_GRACE_MS) continue;
        if (stage.blocked.includes(String(event["transport"]))) {
          stateMismatches.push(
            `${client.name} said connected over ${String(event["transport"])} at +${event.atMs - startMs} ms (${stage.label})`,
          );
        }
      }
      if (stage.landsOn !== undefined && !connectedDuring.some((e) => e["transport"] === stage.landsOn)) {
        stateMismatches.push(`${client.name} never said connected over ${stage.landsOn} (${stage.label})`);
      }
    }
  }
  const hiddenStates = clients.flatMap(hiddenStatesOf);
  return {
    scenario: name,
    sent: messages,
    delivered,
    duplicates,
    isOrderKept,
    failoverMs: failovers.map((f) => f.ms),
    failovers,
    climbBackMs,
    stateMismatches,
    hiddenStates,
  };
}

export function summaryLine(result: ScenarioResult): string {
  const seconds = (values: number[]): string => values.map((v) => `${(v / 1000).toFixed(1)}s`).join(",") || "-";
  return (
    `scenario=${result.scenario} delivered=${result.delivered}/${result.sent} duplicates=${result.duplicates} ` +
    `order=${result.isOrderKept ? "kept" : "BROKEN"} failover=${seconds(result.failoverMs)} ` +
    `climb-back=${seconds(result.climbBackMs)} state-mismatches=${result.stateMismatches.length} ` +
    `hidden-states=${result.hiddenStates.length} flaps=${result.flapsAfterClimb}`
  );
}

interface LabEndpoints {
  tunnel: LabClientConfig["tunnel"];
  dohUrl: string;
  resolver: { host: string; port: number };
  /** The resolver's DoH certificate, trusted by the client. */
  caFile: string;
}

async function startLabClient(lab: Lab, name: string, endpoints: LabEndpoints): Promise<LabClient> {
  const config: LabClientConfig = {
    name,
    serverUrl: SERVER_URL,
    tunnel: endpoints.tunnel,
    dohUrls: [endpoints.dohUrl],
    resolver: endpoints.resolver,
  };
  const child = lab.spawn(
    "client",
    [process.execPath, new URL("./harness/lab-client.ts", import.meta.url).pathname, JSON.stringify(config)],
    { stdin: true, env: { ...process.env, NODE_EXTRA_CA_CERTS: endpoints.caFile } },
  );
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  lines.on("line", (line) => {
    try {
      events.push(JSON.parse(line) as ClientEvent);
    } catch {
      return;
    }
    for (const wake of waiters) wake();
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const client: LabClient = {
    name,
    process: child,
    events,
    userId: "",
    send: (command) => {
      child.stdin?.write(`${JSON.stringify(command)}\n`);
    },
    waitFor: (predicate, what, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = events.find(predicate);
          if (found === undefined) return false;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(found);
          return true;
        };
        const wake = (): void => {
          check();
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          const received = events.filter((e) => e.type === "received").length;
          const recent = events
            .filter((e) => e.type !== "received")
            .slice(-8)
            .map((e) => JSON.stringify(e))
            .join("\n");
          reject(
            new Error(
              `${name}: timed out waiting for ${what} (received ${received}); last events:\n${recent}\n${stderr.join("").slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        waiters.add(wake);
        check();
      }),
  };
  const ready = await client.waitFor((e) => e.type === "ready" || e.type === "error", "ready", 30_000);
  if (ready.type === "error") throw new Error(`${name} could not start: ${String(ready["message"])}`);
  client.userId = String(ready["userId"]);
  return client;
}

function waitConnected(client: LabClient, transport: string, timeoutMs: number, afterMs = 0): Promise<ClientEvent> {
  return client.waitFor(
    (e) => e.type === "state" && e.state === "connected" && e["transport"] === transport && e.atMs >= afterMs,
    `connected over ${transport}`,
    timeoutMs,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenario: { type: "string" },
      messages: { type: "string", default: "300" },
      cycles: { type: "string", default: "1" },
    },
  });
  const names = values.scenario === undefined || values.scenario === "all" ? Object.keys(SCENARIOS) : [values.scenario];
  for (const name of names) {
    const result = await runScenario(
      name,
      Number(values.messages),
      (line) => {
        console.error(line);
      },
      Number(values.cycles),
    );
    console.log(summaryLine(result));
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
