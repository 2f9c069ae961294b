/**
 * A censor that caps QNAME length: nftables in Unbound's network namespace
 * drops every query to the gateway longer than a 101-character name allows.
 * The client sees long names time out while short ones pass, steps its name
 * budget down (253 → 101) by itself, and the conversation still arrives
 * whole, once and in order.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeDnsExchange } from "@remessenger/client-core/node";
import { type NetnsLab, makeNetnsLab } from "../../scripts/harness/netns.ts";
import { type RunningResolver, ensureResolverPackages, startUnbound } from "../../scripts/harness/resolvers.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type Gateway, conversation, tunnelOf } from "./tunnel-conversation.ts";

const ZONE = "t.example";
/** IP length of Unbound's query for a 101-character name is about 160 bytes; a 253-character one about 310. */
const MAX_QUERY_IP_BYTES = 230;

let lab: NetnsLab;
let server: TestServer | undefined;
let unbound: RunningResolver | undefined;
let gateway: Gateway;

beforeAll(async () => {
  ensureResolverPackages();
  lab = makeNetnsLab();
  server = await startServer({
    extraArgs: ["--dns-zone", ZONE, "--dns-listen", `${lab.hostAddress}:0`, "--dns-rate-limit", "0"],
  });
  gateway = tunnelOf(server.logs);
  lab.dropLongUdpTo(gateway.dns.host, gateway.dns.port, MAX_QUERY_IP_BYTES);
  unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns, netns: lab.name, listenHost: lab.innerAddress });
}, 600_000);

afterAll(async () => {
  await unbound?.stop();
  await server?.cleanup();
  lab.cleanup();
});

it("steps the name budget down when long query names are dropped, and delivers everything", async () => {
  if (server === undefined || unbound === undefined) throw new Error("setup failed");
  const resolver = unbound.dns;
  const budgets: number[] = [];
  await conversation({
    serverUrl: server.url,
    gateway,
    kind: "dns",
    exchanges: () => [new NodeDnsExchange(resolver)],
    messages: 50,
    deadlineMs: 150_000,
    onFactory: (factory) => budgets.push(factory.nameBudget),
  });
  expect(lab.droppedPackets()).toBeGreaterThan(0);
  expect(budgets.at(-1)).toBeLessThanOrEqual(101);
}, 240_000);
