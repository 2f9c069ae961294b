/**
 * Operations endpoints on the main listener: `/metrics` (Prometheus text,
 * prom-client), `/readyz` (200 once the node serves, 503 while it starts or
 * shuts down). `/healthz` (the process answers) is the listener's own.
 *
 * Gauges are read from their owners at scrape time (actors, mailboxes,
 * delivery windows, leases, connections per transport); counters count as
 * things happen (errors by code, forwarded sends).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { errorCodeName, type ErrorCode } from "@remessenger/protocol";

/** Every gauge's current value, asked for at each scrape. */
export interface MetricsSources {
  actors(): number;
  mailboxDepth(): number;
  /** Subscribed connections and the messages pushed to them but not yet acked. */
  delivery(): { subscriptions: number; unacked: number };
  connections(): Record<string, number>;
  /** Many nodes only. */
  cluster?(): {
    shardsOwned: number;
    liveNodes: number;
    forwardedOut: number;
    forwardedIn: number;
    rerouted: number;
    fenced: number;
    busUsers: number;
  };
  isReady(): boolean;
}

const registry = new Registry();

const errors = new Counter({
  name: "remessenger_errors_total",
  help: "Errors answered to peers, by error code",
  labelNames: ["code"] as const,
  registers: [registry],
});

/** Counts an error answered to a peer (called by to-status.ts for every edge). */
export function recordError(code: ErrorCode): void {
  errors.inc({ code: errorCodeName(code) });
}

export class OperationsEndpoints {
  private readonly sources: MetricsSources;

  constructor(sources: MetricsSources, labels: { nodeId: string }) {
    this.sources = sources;
    registry.setDefaultLabels({ node: labels.nodeId });
    collectDefaultMetrics({ register: registry, prefix: "remessenger_process_" });
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    };
    gauge("remessenger_chat_actors", "Chat actors in memory on this node", () => sources.actors());
    gauge("remessenger_mailbox_depth", "Sends waiting in chat mailboxes on this node", () => sources.mailboxDepth());
    gauge(
      "remessenger_subscriptions",
      "Subscribed connections (delivery pumps)",
      () => sources.delivery().subscriptions,
    );
    gauge("remessenger_unacked_pushes", "Messages pushed and not yet acked, over all connections", () => {
      return sources.delivery().unacked;
    });
    new Gauge({
      name: "remessenger_connections",
      help: "Open client connections by transport",
      labelNames: ["transport"] as const,
      registers: [registry],
      collect() {
        for (const [transport, count] of Object.entries(sources.connections())) this.set({ transport }, count);
      },
    });
    if (sources.cluster !== undefined) {
      const cluster = (): ReturnType<NonNullable<MetricsSources["cluster"]>> => {
        const stats = sources.cluster?.();
        if (stats === undefined) throw new Error("cluster metrics vanished");
        return stats;
      };
      gauge("remessenger_shards_owned", "Shard leases this node holds", () => cluster().shardsOwned);
      gauge("remessenger_live_nodes", "Nodes this node sees alive", () => cluster().liveNodes);
      gauge("remessenger_forwarded_sends_out", "Sends forwarded to the chat's owner node (total)", () => {
        return cluster().forwardedOut;
      });
      gauge("remessenger_forwarded_sends_in", "Sends other nodes forwarded here (total)", () => cluster().forwardedIn);
      gauge("remessenger_rerouted_sends", "Sends routed again after the owner changed (total)", () => {
        return cluster().rerouted;
      });
      gauge("remessenger_fenced_appends", "Appends the store refused by lease token (total)", () => cluster().fenced);
      gauge("remessenger_bus_users", "Users with a push-bus subscription on this node", () => cluster().busUsers);
    }
  }

  /** Answers /metrics and /readyz; false for any other path. */
  handle(request: IncomingMessage | Http2ServerRequest, anyResponse: ServerResponse | Http2ServerResponse): boolean {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const response = anyResponse as ServerResponse;
    if (path === "/readyz") {
      const isReady = this.sources.isReady();
      response.writeHead(isReady ? 200 : 503, { "content-type": "text/plain" });
      response.end(isReady ? "ready\n" : "not ready\n");
      return true;
    }
    if (path !== "/metrics") return false;
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { "content-type": registry.contentType });
        response.end(text);
      },
      (error: unknown) => {
        response.writeHead(500, { "content-type": "text/plain" });
        response.end(`metrics failed: ${String(error)}\n`);
      },
    );
    return true;
  }
}
