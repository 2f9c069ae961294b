/**
 * The DNS tunnel under loss: Unbound runs in a network namespace of its
 * own, and nftables drops 20% of the UDP queries it sends to our gateway
 * (`numgen random`, this kernel has no netem). A 200-message conversation
 * through it still arrives whole, once and in order.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeDnsExchange } from "@remessenger/client-core/node";
import { type NetnsLab, makeNetnsLab } from "../../scripts/harness/netns.ts";
import { type RunningResolver, ensureResolverPackages, startUnbound } from "../../scripts/harness/resolvers.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type Gateway, conversation, tunnelOf } from "./tunnel-conversation.ts";

const ZONE = "t.example";
const LOSS_PERCENT = 20;

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
  lab.dropUdpTo(gateway.dns.host, gateway.dns.port, LOSS_PERCENT);
  unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns, netns: lab.name, listenHost: lab.innerAddress });
}, 600_000);

afterAll(async () => {
  await unbound?.stop();
  await server?.cleanup();
  lab.cleanup();
});

it(`delivers every message once and in order with ${LOSS_PERCENT}% of resolver-to-gateway queries dropped`, async () => {
  if (server === undefined || unbound === undefined) throw new Error("setup failed");
  const resolver = unbound.dns;
  await conversation({
    serverUrl: server.url,
    gateway,
    kind: "dns",
    exchanges: () => [new NodeDnsExchange(resolver)],
    messages: 200,
    deadlineMs: 150_000,
  });
  // The rule really dropped queries on the way.
  expect(lab.droppedPackets()).toBeGreaterThan(20);
}, 240_000);
