/**
 * Test harness: a network namespace joined to the host by a veth pair, for
 * faults this kernel can make (no netem here): nftables `numgen random`
 * drops a share of packets. Made by the test, as root, and removed by
 * `cleanup()` (deleting the namespace deletes the veth pair and its rules).
 * When namespaces cannot be made, `makeNetnsLab` throws with the reason: a
 * test that needs one fails loudly instead of skipping.
 *
 * Addresses are 10.231.N.1 (host side) and 10.231.N.2 (inside), N random:
 * they exist only on this veth pair, inside this machine.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

const IP = "/usr/sbin/ip";
const NFT = "/usr/sbin/nft";

export interface NetnsLab {
  readonly name: string;
  readonly hostAddress: string;
  readonly innerAddress: string;
  /** Drops `percent`% of UDP packets the namespace sends to host:port (a counted nftables rule). */
  dropUdpTo(host: string, port: number, percent: number): void;
  /** Drops every UDP packet the namespace sends to host:port whose IP length is over `maxBytes` (a QNAME cap). */
  dropLongUdpTo(host: string, port: number, maxBytes: number): void;
  /** Packets the drop rule has dropped so far. */
  droppedPackets(): number;
  cleanup(): void;
}

function run(command: string, args: readonly string[]): string {
  try {
    return execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 }).toString();
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? "";
    throw new Error(`${command} ${args.join(" ")} failed: ${stderr || String(error)}`, { cause: error });
  }
}

export function makeNetnsLab(): NetnsLab {
  const tag = randomBytes(3).toString("hex");
  const name = `rm-dns-${tag}`;
  const subnet = 1 + ((randomBytes(1)[0] ?? 0) % 250);
  const hostAddress = `10.231.${subnet}.1`;
  const innerAddress = `10.231.${subnet}.2`;
  const hostSide = `rmh${tag}`;
  const innerSide = `rmi${tag}`;
  let isMade = false;
  const cleanup = (): void => {
    if (!isMade) return;
    isMade = false;
    try {
      run(IP, ["netns", "del", name]);
    } catch {
      // Already gone: nothing left to clean.
    }
    try {
      run(IP, ["link", "del", hostSide]);
    } catch {
      // Deleting the namespace took the pair with it.
    }
  };
  try {
    run(IP, ["netns", "add", name]);
    isMade = true;
    run(IP, ["link", "add", hostSide, "type", "veth", "peer", "name", innerSide]);
    run(IP, ["link", "set", innerSide, "netns", name]);
    run(IP, ["addr", "add", `${hostAddress}/24`, "dev", hostSide]);
    run(IP, ["link", "set", hostSide, "up"]);
    run(IP, ["netns", "exec", name, IP, "addr", "add", `${innerAddress}/24`, "dev", innerSide]);
    run(IP, ["netns", "exec", name, IP, "link", "set", innerSide, "up"]);
    run(IP, ["netns", "exec", name, IP, "link", "set", "lo", "up"]);
  } catch (error) {
    cleanup();
    throw new Error(
      `cannot make a network namespace for the fault test (root, ip and nft needed): ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  /** A counted drop of the namespace's outgoing packets that match `match` (read by droppedPackets). */
  const addDropRule = (match: string): void => {
    const rules = `table inet rmloss {
  chain out {
    type filter hook output priority 0; policy accept;
    ${match} counter drop
  }
}
`;
    execFileSync(IP, ["netns", "exec", name, NFT, "-f", "-"], { input: rules, stdio: ["pipe", "pipe", "pipe"] });
  };
  return {
    name,
    hostAddress,
    innerAddress,
    dropUdpTo(host, port, percent) {
      addDropRule(`ip daddr ${host} udp dport ${port} numgen random mod 100 < ${percent}`);
    },
    dropLongUdpTo(host, port, maxBytes) {
      addDropRule(`ip daddr ${host} udp dport ${port} ip length > ${maxBytes}`);
    },
    droppedPackets() {
      const listing = run(IP, ["netns", "exec", name, NFT, "list", "table", "inet", "rmloss"]);
      const match = /counter packets (\d+)/.exec(listing);
      return match === null ? 0 : Number(match[1]);
    },
    cleanup,
  };
}
