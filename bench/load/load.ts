/**
 * `npm run load`: a load tool for people who test servers. It drives real,
 * logged-in clients (fresh devices, group chats of two) against a running
 * Re:Messenger deployment, shows live progress, and ends with a summary:
 * messages/s sent and delivered, send → deliver latency (HdrHistogram:
 * p50/p95/p99/max), errors by code, and lost and duplicated counts — every
 * message id is checked against every recipient device.
 *
 *   npm run load -- --target URL[,URL...] --clients N --chats M --rate R --duration S
 *                   [--transport ws|grpc] [--size BYTES] [--json]
 *
 * --target: the main listener (http://host:port) for ws, the gRPC address
 * (host:port) for grpc; several targets (nodes) are used in turn by client.
 * Payloads are opaque random bytes: the tool does no end-to-end encryption
 * work, which the summary says.
 *
 * Only loopback and your own test hosts are targets: the tool registers
 * devices and sends as fast as told. Every loop is bounded (--duration, a
 * drain deadline, a cap on messages in flight).
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { build } from "hdr-histogram-js";
import { messageIdToHex, newMessageId, type Message } from "@remessenger/protocol";
import { type LoadClient, type TransportChoice, connectClient, errorName } from "./load-clients.ts";

const USAGE = `Usage: npm run load -- --target URL[,URL...] --clients N --chats M --rate R --duration S
                     [--transport ws|grpc] [--size BYTES] [--json]

  --target URL,...   ws: the server's main URL (http://127.0.0.1:8080); grpc: its gRPC address (127.0.0.1:8081)
  --clients N        logged-in devices (default 10)
  --chats M          chats of two members, spread over the clients (default 5)
  --rate R           messages per second, all senders together (default 100)
  --duration S       seconds of sending (default 10)
  --transport KIND   ws (default) or grpc
  --size BYTES       payload bytes per message (default 200, at least 8)
  --json             one JSON summary on stdout (progress stays on stderr)
`;

const MAX_IN_FLIGHT = 20_000;
const DRAIN_TIMEOUT_MS = 15_000;
const SETUP_CONCURRENCY = 20;
const TICK_MS = 10;

interface Options {
  targets: string[];
  clients: number;
  chats: number;
  rate: number;
  durationS: number;
  transport: TransportChoice;
  size: number;
  isJson: boolean;
}

interface Sent {
  chatId: string;
  senderIndex: number;
  atMs: number;
  /** Recipient devices that still have to get it (after the server answered). */
  waitingFor: Set<number>;
  isAnswered: boolean;
}

export interface LoadSummary {
  transport: TransportChoice;
  targets: string[];
  clients: number;
  chats: number;
  targetRate: number;
  durationS: number;
  e2ee: "off: opaque payloads, no client-side encryption work";
  sent: number;
  answered: number;
  delivered: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; count: number };
  errors: Record<string, number>;
  /** One message per error code, as the server worded it. */
  errorExamples: Record<string, string>;
  lost: number;
  duplicated: number;
  notSentBackpressure: number;
}

function parseOptions(argv: readonly string[]): Options | "help" {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      target: { type: "string" },
      clients: { type: "string", default: "10" },
      chats: { type: "string", default: "5" },
      rate: { type: "string", default: "100" },
      duration: { type: "string", default: "10" },
      transport: { type: "string", default: "ws" },
      size: { type: "string", default: "200" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const number = (name: string, text: string, min: number, max: number): number => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be ${min} to ${max}`);
    return value;
  };
  if (values.target === undefined) throw new Error("--target is required");
  const targets = values.target
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  const transport = values.transport;
  if (transport !== "ws" && transport !== "grpc") throw new Error("--transport must be ws or grpc");
  const clients = number("clients", values.clients, 2, 10_000);
  return {
    targets,
    clients,
    chats: number("chats", values.chats, 1, 100_000),
    rate: number("rate", values.rate, 1, 1_000_000),
    durationS: number("duration", values.duration, 1, 3_600),
    transport,
    size: number("size", values.size, 8, 128 * 1024),
    isJson: values.json,
  };
}

async function inBatches<T>(count: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < count; start += SETUP_CONCURRENCY) {
    const indexes = Array.from({ length: Math.min(SETUP_CONCURRENCY, count - start) }, (_, i) => start + i);
    const batch = await Promise.all(indexes.map(task));
    batch.forEach((result, i) => (results[start + i] = result));
  }
  return results;
}

export async function runLoad(options: Options, progress: (line: string) => void): Promise<LoadSummary> {
  const { targets, transport } = options;
  progress(`connecting ${options.clients} clients over ${transport} to ${targets.join(", ")}...`);
  const clients: LoadClient[] = await inBatches(options.clients, (i) =>
    connectClient(transport, targets[i % targets.length] ?? "", `load-${i}`),
  );
  try {
    // Chat j: clients a and b, a ≠ b, spread so every client has chats when M ≥ N/2.
    const members = Array.from({ length: options.chats }, (_, j): [number, number] => {
      const a = j % options.clients;
      const b = (a + 1 + Math.floor(j / options.clients)) % options.clients;
      return [a, b === a ? (a + 1) % options.clients : b];
    });
    progress(`creating ${options.chats} chats...`);
    const chatIds = await inBatches(options.chats, (j) => {
      const [a, b] = members[j] ?? [0, 1];
      return (clients[a] as LoadClient).createChat([clients[b]?.userId ?? ""]);
    });
    const chatMembers = new Map(chatIds.map((chatId, j) => [chatId, members[j] ?? [0, 1]] as const));

    const sent = new Map<string, Sent>();
    const seen = new Set<string>();
    const histogram = build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 3_600_000_000,
      numberOfSignificantValueDigits: 3,
    });
    const errors: Record<string, number> = {};
    const examples: Record<string, string> = {};
    let delivered = 0;
    let duplicated = 0;
    let answered = 0;
    let inFlight = 0;
    let notSent = 0;

    const onMessage = (receiverIndex: number, message: Message, receivedMs: number): void => {
      const key = `${receiverIndex}/${message.chatId}/${message.seq}`;
      if (seen.has(key)) {
        duplicated += 1;
        return;
      }
      seen.add(key);
      const record = sent.get(messageIdToHex(message.messageId));
      if (record === undefined || !record.waitingFor.delete(receiverIndex)) return; // own echo, or not ours
      delivered += 1;
      histogram.recordValue(Math.max(1, Math.round((receivedMs - record.atMs) * 1_000))); // µs
      if (record.isAnswered && record.waitingFor.size === 0) sent.delete(messageIdToHex(message.messageId));
    };
    progress("subscribing...");
    await inBatches(clients.length, (i) =>
      (clients[i] as LoadClient).subscribe({ onMessage: (m, at) => onMessage(i, m, at) }),
    );

    const payload = new Uint8Array(randomBytes(options.size));
    let counter = 0;
    let sentCount = 0;
    const sendOne = (): void => {
      if (inFlight >= MAX_IN_FLIGHT) {
        notSent += 1;
        return;
      }
      const chatId = chatIds[counter % chatIds.length] ?? "";
      const pair = chatMembers.get(chatId) ?? [0, 1];
      const senderIndex = pair[Math.floor(counter / chatIds.length) % 2] ?? 0;
      const recipient = pair[0] === senderIndex ? pair[1] : pair[0];
      counter += 1;
      const messageId = newMessageId();
      const id = messageIdToHex(messageId);
      const record: Sent = {
        chatId,
        senderIndex,
        atMs: performance.now(),
        waitingFor: new Set(recipient === undefined ? [] : [recipient]),
        isAnswered: false,
      };
      sent.set(id, record);
      sentCount += 1;
      inFlight += 1;
      (clients[senderIndex] as LoadClient).send(chatId, messageId, payload).then(
        () => {
          inFlight -= 1;
          answered += 1;
          record.isAnswered = true;
          if (record.waitingFor.size === 0) sent.delete(id);
        },
        (error: unknown) => {
          inFlight -= 1;
          const name = errorName(error);
          errors[name] = (errors[name] ?? 0) + 1;
          examples[name] ??= error instanceof Error ? error.message.slice(0, 200) : String(error);
          sent.delete(id); // never acked: not owed to anyone
        },
      );
    };

    progress(`sending ${options.rate} msgs/s for ${options.durationS} s (payloads opaque, no E2EE work)...`);
    const startedMs = performance.now();
    const endMs = startedMs + options.durationS * 1_000;
    let lastReportMs = startedMs;
    let lastSent = 0;
    let lastDelivered = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = performance.now();
        if (now >= endMs) {
          clearInterval(timer);
          resolve();
          return;
        }
        const due = Math.floor(((now - startedMs) / 1_000) * options.rate) - sentCount - notSent;
        for (let i = 0; i < due; i += 1) sendOne();
        if (now - lastReportMs >= 1_000) {
          const seconds = (now - lastReportMs) / 1_000;
          const p99 = histogram.totalCount > 0 ? (histogram.getValueAtPercentile(99) / 1_000).toFixed(1) : "-";
          progress(
            `${((now - startedMs) / 1_000).toFixed(0).padStart(4)} s  sent ${((sentCount - lastSent) / seconds).toFixed(0)}/s  ` +
              `delivered ${((delivered - lastDelivered) / seconds).toFixed(0)}/s  in flight ${inFlight}  p99 ${p99} ms  ` +
              `errors ${Object.values(errors).reduce((a, b) => a + b, 0)}`,
          );
          lastReportMs = now;
          lastSent = sentCount;
          lastDelivered = delivered;
        }
      }, TICK_MS);
    });
    const sendSeconds = (performance.now() - startedMs) / 1_000;

    progress("draining: waiting for the last deliveries...");
    const drainDeadline = performance.now() + DRAIN_TIMEOUT_MS;
    while ((inFlight > 0 || [...sent.values()].some((r) => r.isAnswered)) && performance.now() < drainDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const lost = [...sent.values()].filter((r) => r.isAnswered).reduce((sum, r) => sum + r.waitingFor.size, 0);
    const deliverSeconds = Math.max(sendSeconds, 1e-3);
    return {
      transport,
      targets,
      clients: options.clients,
      chats: options.chats,
      targetRate: options.rate,
      durationS: options.durationS,
      e2ee: "off: opaque payloads, no client-side encryption work",
      sent: sentCount,
      answered,
      delivered,
      sentPerSecond: sentCount / sendSeconds,
      deliveredPerSecond: delivered / deliverSeconds,
      latencyMs: {
        p50: histogram.getValueAtPercentile(50) / 1_000,
        p95: histogram.getValueAtPercentile(95) / 1_000,
        p99: histogram.getValueAtPercentile(99) / 1_000,
        max: histogram.maxValue / 1_000,
        count: histogram.totalCount,
      },
      errors,
      errorExamples: examples,
      lost,
      duplicated,
      notSentBackpressure: notSent,
    };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

export function formatSummary(summary: LoadSummary): string {
  const { latencyMs: l } = summary;
  const errorText = Object.entries(summary.errors)
    .map(([code, count]) => `${code} ${count}`)
    .join(", ");
  return [
    `load: ${summary.clients} clients over ${summary.transport}, ${summary.chats} chats, ` +
      `${summary.targetRate} msgs/s for ${summary.durationS} s → ${summary.targets.join(", ")}`,
    `E2EE: ${summary.e2ee}`,
    `sent        ${summary.sent} (${summary.sentPerSecond.toFixed(0)}/s), answered ${summary.answered}`,
    `delivered   ${summary.delivered} (${summary.deliveredPerSecond.toFixed(0)}/s)`,
    `latency     send → deliver p50 ${l.p50.toFixed(2)} ms  p95 ${l.p95.toFixed(2)} ms  p99 ${l.p99.toFixed(2)} ms  max ${l.max.toFixed(2)} ms (${l.count} samples)`,
    `errors      ${errorText === "" ? "none" : errorText}`,
    ...Object.entries(summary.errorExamples).map(([code, text]) => `            ${code}: e.g. "${text}"`),
    `lost        ${summary.lost} (answered by the server, never delivered to a member)`,
    `duplicated  ${summary.duplicated} (the same chat seq delivered twice to one device)`,
    ...(summary.notSentBackpressure > 0
      ? [`not sent    ${summary.notSentBackpressure} (over ${MAX_IN_FLIGHT} in flight: the server fell behind)`]
      : []),
  ].join("\n");
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const summary = await runLoad(options, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(options.isJson ? `${JSON.stringify(summary)}\n` : `\n${formatSummary(summary)}\n`);
  return summary.lost > 0 || summary.duplicated > 0 ? 1 : 0;
}

if (import.meta.main) process.exitCode = await main();
