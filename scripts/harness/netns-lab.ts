/**
 * Test harness: a small network of our own, made of Linux network namespaces,
 * where a test plays the censor with real packet filters.
 *
 *   client (10.201.1.2) ── router ── server   (10.201.2.2)
 *                            └────── resolver (10.201.3.2)
 *
 * Each host is a namespace with a veth to the router namespace, which
 * forwards between them and holds the filters: nftables rules in its forward
 * chain (drops, resets, DPI-style payload matches, random loss with numgen)
 * and tc tbf for rate limits (this kernel has no netem). Processes run inside
 * a host with `exec(host, argv)`.
 *
 * Invariants: names are unique per lab (several labs may run at once);
 * `close()` removes every namespace it made (and deleting a namespace takes its
 * veths and rules with it); a machine where namespaces cannot be made fails
 * `startLab` with the reason — it never silently does less.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const run = promisify(execFile);

export type LabHost = "client" | "server" | "resolver";

export const LAB_ADDRESS: Record<LabHost, string> = {
  client: "10.201.1.2",
  server: "10.201.2.2",
  resolver: "10.201.3.2",
};
const ROUTER_ADDRESS: Record<LabHost, string> = {
  client: "10.201.1.1",
  server: "10.201.2.1",
  resolver: "10.201.3.1",
};
const HOSTS: readonly LabHost[] = ["client", "server", "resolver"];

/** A named set of filters the router applies; `undefined` fields leave that part open. */
export interface Censorship {
  /** nftables rules for the router's forward chain (one rule per string, without "add rule"). */
  nftRules?: string[];
  /** Rate limit from the router towards the client, e.g. "20kbit". */
  rateTowardsClient?: string;
  /** Rate limit from the client through the router, e.g. "20kbit". */
  rateFromClient?: string;
}

export interface Lab {
  readonly id: string;
  namespace(host: LabHost | "router"): string;
  /** Runs argv inside a host's namespace (the caller waits for or kills it). */
  spawn(host: LabHost, argv: readonly string[], options?: { env?: NodeJS.ProcessEnv; stdin?: boolean }): ChildProcess;
  /** Runs a command inside a host and returns its stdout. */
  exec(host: LabHost | "router", argv: readonly string[]): Promise<string>;
  /**
   * Rules that always run before the censor's (e.g. marking WebSocket flows
   * from their first packet), so a censor switched on later can still tell
   * the connections that are already open apart.
   */
  classify(nftRules: readonly string[]): Promise<void>;
  /** Replaces whatever censorship is active with this one (an empty one lifts it). */
  censor(censorship: Censorship): Promise<void>;
  close(): Promise<void>;
}

/** Fails with a clear reason when this machine cannot build the lab (not root, no ip/nft/tc). */
export function assertLabPossible(): void {
  if (process.getuid?.() !== 0)
    throw new Error("the network lab needs root (ip netns, nft, tc); this process is not root");
  for (const tool of ["ip", "nft", "tc"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      throw new Error(`the network lab needs '${tool}' (Debian: iproute2 / nftables), and it is not installed`);
    }
  }
}

export async function startLab(): Promise<Lab> {
  assertLabPossible();
  const id = randomBytes(3).toString("hex");
  const ns = (host: LabHost | "router"): string => `rm${id}-${host}`;
  const made: string[] = [];
  const ip = async (args: string[]): Promise<void> => {
    await run("ip", args);
  };
  const inNs = async (name: string, argv: string[]): Promise<string> => {
    const { stdout } = await run("ip", ["netns", "exec", name, ...argv]);
    return stdout;
  };
  const destroy = async (): Promise<void> => {
    for (const name of made.splice(0).reverse()) await run("ip", ["netns", "del", name]).catch(() => undefined);
  };
  try {
    for (const name of [ns("router"), ...HOSTS.map(ns)]) {
      await ip(["netns", "add", name]);
      made.push(name);
      await inNs(name, ["ip", "link", "set", "lo", "up"]);
    }
    await inNs(ns("router"), ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for (const host of HOSTS) {
      // veth names are at most 15 characters; the id keeps parallel labs apart.
      const hostSide = `v${id}${host[0] ?? "x"}h`;
      const routerSide = `v${id}${host[0] ?? "x"}r`;
      await ip(["link", "add", hostSide, "type", "veth", "peer", "name", routerSide]);
      await ip(["link", "set", hostSide, "netns", ns(host)]);
      await ip(["link", "set", routerSide, "netns", ns("router")]);
      await inNs(ns(host), ["ip", "addr", "add", `${LAB_ADDRESS[host]}/24`, "dev", hostSide]);
      await inNs(ns(host), ["ip", "link", "set", hostSide, "up"]);
      await inNs(ns(host), ["ip", "route", "add", "default", "via", ROUTER_ADDRESS[host]]);
      await inNs(ns("router"), ["ip", "addr", "add", `${ROUTER_ADDRESS[host]}/24`, "dev", routerSide]);
      await inNs(ns("router"), ["ip", "link", "set", routerSide, "up"]);
    }
    await inNs(ns("router"), ["nft", "add table inet censor"]);
    // Conntrack counts packets and bytes per flow only when asked ("ct reply packets > N" needs it);
    // the table above loaded conntrack, so the per-namespace switch exists now.
    await inNs(ns("router"), ["nft", "add chain inet censor track { type filter hook prerouting priority -300 ; }"]);
    await inNs(ns("router"), ["nft", "add rule inet censor track ct state new counter"]);
    await inNs(ns("router"), ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"]);
    await inNs(ns("router"), [
      "nft",
      "add chain inet censor classify { type filter hook forward priority -10 ; policy accept ; }",
    ]);
    await inNs(ns("router"), [
      "nft",
      "add chain inet censor forward { type filter hook forward priority 0 ; policy accept ; }",
    ]);
  } catch (error) {
    await destroy();
    throw new Error(`could not build the network lab: ${(error as Error).message}`, { cause: error });
  }

  const routerLink = (host: LabHost): string => `v${id}${host[0] ?? "x"}r`;
  const clearRates = async (): Promise<void> => {
    for (const host of HOSTS) {
      await inNs(ns("router"), ["tc", "qdisc", "del", "dev", routerLink(host), "root"]).catch(() => undefined);
    }
  };

  return {
    id,
    namespace: ns,
    spawn: (host, argv, options = {}) =>
      spawn("ip", ["netns", "exec", ns(host), ...argv], {
        stdio: [options.stdin === true ? "pipe" : "ignore", "pipe", "pipe"],
        env: options.env ?? process.env,
      }),
    exec: (host, argv) => inNs(ns(host), [...argv]),
    classify: async (rules) => {
      await inNs(ns("router"), ["nft", "flush chain inet censor classify"]);
      for (const rule of rules) await inNs(ns("router"), ["nft", `add rule inet censor classify ${rule}`]);
    },
    censor: async (censorship) => {
      await inNs(ns("router"), ["nft", "flush chain inet censor forward"]);
      for (const rule of censorship.nftRules ?? []) {
        await inNs(ns("router"), ["nft", `add rule inet censor forward ${rule}`]);
      }
      await clearRates();
      // tbf shapes what leaves an interface: towards the client is the router's client-side link.
      if (censorship.rateTowardsClient !== undefined) {
        await inNs(ns("router"), tbf(routerLink("client"), censorship.rateTowardsClient));
      }
      if (censorship.rateFromClient !== undefined) {
        for (const host of ["server", "resolver"] as const) {
          await inNs(ns("router"), tbf(routerLink(host), censorship.rateFromClient));
        }
      }
    },
    close: destroy,
  };
}

function tbf(device: string, rate: string): string[] {
  return ["tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", "1600", "latency", "400ms"];
}
