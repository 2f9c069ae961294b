/**
 * Builds the units of one session run (start() to stop()) and wires them
 * top-down, each given the lower units it calls and nothing above it:
 *
 *   ConnectionKeeper → Receiver → MessageOpener, Repair → OutboxSender → Sealer
 *   → PairwiseSessions, GroupSessions → ServerApi → the logged-in Connection
 *
 * A run is built fresh on every start(), on the same store: nothing of a
 * stopped run (its lock queue, throttles, ack window) leaks into the next.
 */
import { selectX25519Provider } from "@remessenger/protocol";
import type { ConnectionMonitor } from "../connection/connection-state.ts";
import type { TransportFactory } from "../connection/transport.ts";
import { selectEd25519Provider } from "../crypto/select-ed25519-provider.ts";
import { E2eLock } from "../e2e/e2e-lock.ts";
import { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import { DEFAULT_GRACE_WINDOW } from "../group/epoch-window.ts";
import { GroupSessions } from "../group/group-sessions.ts";
import { OutboxSender } from "../outbox/outbox-sender.ts";
import type { Clock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Logger } from "../runtime/logger.ts";
import type { ClientStore } from "../store/client-store.ts";
import { ConnectionKeeper } from "./connection-keeper.ts";
import { MessageOpener } from "./message-opener.ts";
import { Receiver } from "./receiver.ts";
import { Repair } from "./repair.ts";
import { Sealer } from "./sealer.ts";
import { ServerApi } from "./server-api.ts";
import { type SessionEmitter, reportProblem } from "./session-events.ts";
import type { ClientSessionOptions } from "./session-options.ts";
import type { SessionTiming } from "./session-timing.ts";

/** The units of one run, from start() to stop(). */
export interface SessionUnits {
  readonly lifetime: AbortController;
  readonly api: ServerApi;
  readonly e2e: PairwiseSessions;
  readonly groups: GroupSessions;
  readonly sealer: Sealer;
  readonly outbox: OutboxSender;
  readonly repair: Repair;
  readonly receiver: Receiver;
  readonly keeper: ConnectionKeeper;
  loop?: Promise<void>;
  stopped?: Promise<void>;
  cancelPoll?: () => void;
}

/** What every run shares: the session's resolved options and its long-lived status and events. */
export interface SessionShell {
  options: ClientSessionOptions;
  transports: TransportFactory;
  clock: Clock;
  logger: Logger;
  timing: SessionTiming;
  monitor: ConnectionMonitor;
  events: SessionEmitter;
  queuedCount: QueuedCount;
}

/** Keeps the status's count of queued messages current; only the latest of overlapping reads counts. */
export class QueuedCount {
  private readonly store: ClientStore;
  private readonly monitor: ConnectionMonitor;
  private readonly events: SessionEmitter;
  private readonly logger: Logger;
  private request = 0;

  constructor(store: ClientStore, monitor: ConnectionMonitor, events: SessionEmitter, logger: Logger) {
    this.store = store;
    this.monitor = monitor;
    this.events = events;
    this.logger = logger;
  }

  refresh(): void {
    const request = ++this.request;
    drop(
      this.store.countOutbox("queued").then((count) => {
        if (request === this.request) this.monitor.dispatch({ type: "queued", count });
      }),
      (error) => {
        reportProblem(this.events, this.logger, "counting the outbox", error);
      },
    );
  }
}

/** Builds the units of one run from the store's state (the providers are chosen for the platform when not given). */
export async function buildSessionUnits(shell: SessionShell): Promise<SessionUnits> {
  const { profile, store, e2e: keys } = shell.options;
  const { clock, logger, monitor, events, timing, queuedCount } = shell;
  const lifetime = new AbortController();
  const api = new ServerApi({ monitor, requestTimeoutMs: timing.requestTimeoutMs, signal: lifetime.signal });
  const ed25519 = keys.ed25519 ?? (await selectEd25519Provider());
  // One lock for both layers, handed over and never used here: they take it inside their methods.
  const lock = new E2eLock();
  const e2e = new PairwiseSessions({
    userId: profile.userId,
    deviceId: profile.deviceId,
    identity: keys.identity,
    storageKey: keys.storageKey,
    store,
    lock,
    x25519: keys.x25519 ?? (await selectX25519Provider()),
    ed25519,
    clock,
    ...(keys.onKeyMade === undefined ? {} : { onKeyMade: keys.onKeyMade }),
    ...(keys.mlKem === undefined ? {} : { mlKem: keys.mlKem }),
    ...(shell.options.signedPreKeys === undefined ? {} : { signedPreKeys: shell.options.signedPreKeys }),
  });
  e2e.setServer(api);
  const groups = new GroupSessions({
    userId: profile.userId,
    deviceId: profile.deviceId,
    storageKey: keys.storageKey,
    store,
    lock,
    ed25519,
    pairwise: e2e,
    clock,
    window: shell.options.groupWindow ?? DEFAULT_GRACE_WINDOW,
  });
  groups.setServer(api);
  const isSendingOutbox = shell.options.sendOutbox ?? true;
  const transports = shell.transports;
  const sealer = new Sealer({ store, api, e2e, groups, transports, clock, logger, isSendingOutbox });
  const random = shell.options.random ?? Math.random;
  const outbox = new OutboxSender({
    store,
    sender: sealer,
    onUpdate: (entry) => {
      events.emit("outbox", entry);
      queuedCount.refresh();
    },
    onError: (error) => {
      reportProblem(events, logger, "sending the outbox", error);
    },
    clock,
    random,
    logger,
  });
  const { deviceId, userId } = profile;
  const repair = new Repair({ deviceId, e2e, groups, sealer, outbox, events, clock, logger });
  const opener = new MessageOpener({ store, groups, logger });
  const highestSeqs = await store.highestReceivedSeqs();
  const ackBatchMax = timing.ackBatchMax;
  const receiverOptions = { deviceId, userId, highestSeqs, store, api, monitor, opener, repair, groups };
  const receiver = new Receiver({ ...receiverOptions, events, clock, logger, ackBatchMax });
  const keeper = new ConnectionKeeper({
    ...{ profile, signer: shell.options.signer, transports, monitor, api, receiver, outbox, e2e, groups, events },
    ...{ clock, random, logger, timing, isSubscribing: shell.options.subscribe ?? true },
  });
  return { lifetime, api, e2e, groups, sealer, outbox, repair, receiver, keeper };
}
