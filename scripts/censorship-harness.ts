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
import { type TestServer, startServer } from "./harness/server.ts";
import { RUNG_STABLE_AFTER_MS } from "../client/core/src/manager/transport-ladder.ts";

const SERVER_PORT = 8080;
const SERVER_URL = `http://${LAB_ADDRESS.server}:${SERVER_PORT}`;
/** "GET /v1/ws": the first bytes of a WebSocket upgrade to our server; DPI sees this much. */
const WEBSOCKET_UPGRADE_PREFIX = "0x474554202f76312f7773";
const WS_MARK = "0x1";

export interface Scenario {
  description: string;
  censorship: Censorship;
  /** Transports a client must not report as connected once the block has bitten. */
  blocked: readonly string[];
  /** How long the block lasts. */
  blockMs: number;
}

export const SCENARIOS: Record<string, Scenario> = {
  "drop-ws": {
    description: "a censor silently drops every WebSocket flow (DPI on the upgrade), new and open ones",
    censorship: { nftRules: [`ct mark ${WS_MARK} drop`] },
    blocked: ["websocket"],
    blockMs: 12_000,
  },
  "reset-ws": {
    description: "DPI lets the WebSocket upgrade through, then resets the connection",
    censorship: { nftRules: [`ct mark ${WS_MARK} ct reply packets > 4 reject with tcp reset`] },
    blocked: ["websocket"],
    blockMs: 12_000,
  },
  "throttle-loss": {
    description: "the link to the client is throttled to 20 kbit/s with 30% packet loss",
    censorship: {
      rateTowardsClient: "20kbit",
      rateFromClient: "20kbit",
      nftRules: [
        `ip daddr ${LAB_ADDRESS.client} numgen random mod 100 < 30 drop`,
        `ip saddr ${LAB_ADDRESS.client} numgen random mod 100 < 30 drop`,
      ],
    },
    blocked: [],
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
  /** Per client and block: block start → the first message written after it arrives. */
  failoverMs: number[];
  /** Per client: block lifted → reported connected over WebSocket again. */
  climbBackMs: number[];
  /** Moments a client reported a connected transport the censor was blocking. */
  stateMismatches: string[];
  /** Messages left in a queued state without a reason shown. */
  hiddenStates: number;
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
  const clients: LabClient[] = [];
  try {
    await lab.classify([`tcp dport ${SERVER_PORT} @ih,0,80 ${WEBSOCKET_UPGRADE_PREFIX} ct mark set ${WS_MARK}`]);
    server = await startServer({
      listen: `${LAB_ADDRESS.server}:${SERVER_PORT}`,
      extraArgs: ["--grpc-listen", "off"],
      wrapCommand: ["ip", "netns", "exec", lab.namespace("server")],
    });
    for (const clientName of ["alice", "bob"]) clients.push(await startLabClient(lab, clientName));
    const [alice, bob] = clients as [LabClient, LabClient];
    log(`${name}: ${scenario.description}`);
    alice.send({ cmd: "chat", with: bob.userId });
    const chatEvent = await alice.waitFor((e) => e.type === "chat", "the chat", 30_000);
    const chatId = String(chatEvent["chatId"]);
    for (const client of clients) await waitConnected(client, "websocket", 30_000);

    // The conversation runs across every block: some before, during, between and after.
    const perSender = Math.ceil(messages / 2);
    const totalMs = scenario.blockMs * (1 + 2 * cycles) + (cycles - 1) * RUNG_STABLE_AFTER_MS;
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
    const windows: BlockWindow[] = [];
    const climbBackMs: number[] = [];
    for (let cycle = 1; cycle <= cycles; cycle++) {
      const startMs = Date.now();
      await lab.censor(scenario.censorship);
      log(`${name}: censor on (${cycle}/${cycles})`);
      await sleep(scenario.blockMs);
      await lab.censor({});
      const liftedMs = Date.now();
      windows.push({ startMs, liftedMs });
      log(`${name}: censor off`);
      for (const client of clients) {
        const event = await waitConnected(client, "websocket", CLIMB_TIMEOUT_MS, liftedMs);
        climbBackMs.push(Math.max(0, event.atMs - liftedMs));
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
    const result = summarise(name, clients, messages, windows, scenario, climbBackMs, sentAtMs);
    for (const mismatch of result.stateMismatches.slice(0, 5)) log(`${name}: mismatch: ${mismatch}`);
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
    await server?.cleanup().catch(() => undefined);
    await lab.close();
  }
}

function received(client: LabClient): ClientEvent[] {
  return client.events.filter((e) => e.type === "received");
}

interface BlockWindow {
  startMs: number;
  liftedMs: number;
}

function summarise(
  name: string,
  clients: LabClient[],
  messages: number,
  windows: readonly BlockWindow[],
  scenario: Scenario,
  climbBackMs: number[],
  sentAtMs: ReadonlyMap<string, number>,
): ScenarioResult {
  let delivered = 0;
  let duplicates = 0;
  let isOrderKept = true;
  const failoverMs: number[] = [];
  const stateMismatches: string[] = [];
  for (const client of clients) {
    const texts = received(client).map((e) => String(e["text"]));
    const unique = new Set(texts);
    delivered += unique.size;
    duplicates += texts.length - unique.size;
    const numbers = texts.map((t) => Number(t.split(" ")[1]));
    if (numbers.some((n, i) => i > 0 && n <= (numbers[i - 1] ?? 0))) isOrderKept = false;
    for (const { startMs, liftedMs } of windows) {
      // Failover: the filter went on → the first message written after it arrived.
      const next = received(client).find((e) => (sentAtMs.get(String(e["text"])) ?? 0) >= startMs);
      if (next !== undefined) failoverMs.push(next.atMs - startMs);
      for (const event of client.events) {
        if (event.type !== "state" || event.state !== "connected") continue;
        if (event.atMs < startMs + DETECTION_GRACE_MS || event.atMs > liftedMs) continue;
        if (scenario.blocked.includes(String(event["transport"]))) {
          stateMismatches.push(
            `${client.name} said connected over ${String(event["transport"])} at +${event.atMs - startMs} ms`,
          );
        }
      }
    }
  }
  // Every outbox change that was not final must have come with its state; a queued message shows its problem.
  const hiddenStates = clients
    .flatMap((c) => c.events)
    .filter((e) => e.type === "outbox" && e["state"] === undefined).length;
  return {
    scenario: name,
    sent: messages,
    delivered,
    duplicates,
    isOrderKept,
    failoverMs,
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
    `climb-back=${seconds(result.climbBackMs)} state-mismatches=${result.stateMismatches.length}`
  );
}

async function startLabClient(lab: Lab, name: string): Promise<LabClient> {
  const child = lab.spawn(
    "client",
    [
      process.execPath,
      new URL("./harness/lab-client.ts", import.meta.url).pathname,
      JSON.stringify({ name, serverUrl: SERVER_URL }),
    ],
    { stdin: true },
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
