/**
 * A scripted client for the censorship harness, run inside the lab's client
 * namespace: one device on the real client core (session, outbox, transport
 * ladder), driven by JSON commands on stdin and reporting JSON events on
 * stdout, so the orchestrator can see exactly what the client saw and said.
 *
 *   stdin:  {"cmd":"chat","with":USER_ID} | {"cmd":"send","chatId":ID,"text":T} | {"cmd":"stop"}
 *   stdout: {"type":"ready",...} {"type":"chat",...} {"type":"state",...}
 *           {"type":"received",...} {"type":"outbox",...} {"type":"error",...}
 *
 * Usage: node scripts/harness/lab-client.ts '{"name":"alice","serverUrl":"http://10.201.2.2:8080"}'
 */
import { createInterface } from "node:readline";
import { nodeExchanges } from "../../client/cli/src/transport/cli-transports.ts";
import {
  MemoryClientStore,
  selectEd25519Provider,
  makeDeviceIdentity,
  ClientSession,
  registerNewDevice,
  contentText,
  createTransports,
  silentLogger,
  systemClock,
  type TransportFactory,
} from "@remessenger/client-core";
import { selectX25519Provider, randomBytes, ChatKind } from "@remessenger/protocol";

export interface LabClientConfig {
  name: string;
  serverUrl: string;
  /** The server's DNS tunnel (base64url key): DoH and plain DNS join the ladder. */
  tunnel?: { zone: string; publicKey: string } | undefined;
  dohUrls?: string[];
  resolver?: { host: string; port: number };
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ atMs: Date.now(), ...event })}\n`);
}

/** The CLI's own ladder (`--transport auto`): WebSocket, HTTPS, then DoH and plain DNS when there is a tunnel. */
function ladderFor(config: LabClientConfig): TransportFactory {
  return createTransports({
    endpoints: { serverUrls: config.serverUrl, tunnel: config.tunnel, dohUrls: config.dohUrls ?? [] },
    transport: "auto",
    exchanges: nodeExchanges(config.resolver),
    logger: silentLogger,
    clock: systemClock,
  });
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "{}") as LabClientConfig;
  const provider = await selectEd25519Provider();
  const signer = await provider.signerFromSeed(provider.generateSeed());
  const registered = await registerNewDevice({
    transports: ladderFor(config),
    signer,
    displayName: config.name,
    timeoutMs: 30_000,
  });
  const store = new MemoryClientStore();
  const profile = {
    serverUrl: config.serverUrl,
    userId: registered.userId,
    deviceId: registered.deviceId,
    displayName: config.name,
    registeredAtMs: registered.serverTimeMs,
  };
  await store.saveProfile(profile);
  const identity = await makeDeviceIdentity(signer, await (await selectX25519Provider()).generateKeyPair());
  const session = new ClientSession({
    profile,
    signer,
    store,
    e2e: { identity, storageKey: randomBytes(32) },
    // The product's own timing (no test speed-ups): the harness measures what users get.
    transports: ladderFor(config),
  });
  session.events.on("connection", (status) => {
    emit({
      type: "state",
      state: status.state,
      transport: status.transport,
      reason: status.lastFailure?.reason,
      nextRetryAtMs: status.nextRetryAtMs,
      queued: status.queuedCount,
    });
  });
  session.events.on("message", ({ message, isOwnDevice }) => {
    if (isOwnDevice) return;
    emit({ type: "received", chatId: message.chatId, seq: message.seq, text: contentText(message.content) });
  });
  session.events.on("outbox", (entry) => {
    emit({
      type: "outbox",
      messageId: entry.messageId,
      state: entry.state,
      seq: entry.seq,
      problem: entry.problem === undefined ? undefined : `${entry.problem.code}: ${entry.problem.message}`,
    });
  });
  await session.start();
  emit({ type: "ready", userId: profile.userId, deviceId: profile.deviceId });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as { cmd: string; with?: string; chatId?: string; text?: string };
    try {
      if (command.cmd === "chat" && command.with !== undefined) {
        const { chat } = await session.request(
          "createChat",
          { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [command.with], title: "" },
          { timeoutMs: 30_000 },
        );
        emit({ type: "chat", chatId: chat?.chatId });
      } else if (command.cmd === "send" && command.chatId !== undefined && command.text !== undefined) {
        const entry = await session.send(command.chatId, command.text);
        emit({ type: "queued", messageId: entry.messageId, state: entry.state });
      } else if (command.cmd === "stop") {
        break;
      }
    } catch (error) {
      emit({ type: "error", cmd: command.cmd, message: (error as Error).message });
    }
  }
  await session.stop();
  emit({ type: "stopped" });
}

if (import.meta.main) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      emit({ type: "error", message: (error as Error).message });
      process.exit(1);
    },
  );
}
