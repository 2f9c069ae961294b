/**
 * Nothing readable on the way: every query name the tunnel sends while a
 * conversation runs is captured (as a resolver would see it) and checked —
 * no message text, no ids, no protobuf structure, no repeating prefix, and
 * bytes as evenly spread as random ones.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeDnsExchange } from "@remessenger/client-core/node";
import type { DnsExchange, DnsExchangeOptions } from "@remessenger/client-core";
import { decodeDnsMessage, decodeTunnelName } from "@remessenger/protocol";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type Gateway, conversation, tunnelOf } from "./tunnel-conversation.ts";

const ZONE = "t.example";
let server: TestServer;
let gateway: Gateway;

beforeAll(async () => {
  server = await startServer({
    extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "0"],
  });
  gateway = tunnelOf(server.logs);
});

afterAll(async () => {
  await server.cleanup();
});

/** A DnsExchange that records the question name of every query it sends. */
class CapturingExchange implements DnsExchange {
  readonly name = "capture";
  readonly maxInFlight = 32;
  private readonly inner: DnsExchange;
  private readonly names: string[];

  constructor(inner: DnsExchange, names: string[]) {
    this.inner = inner;
    this.names = names;
  }

  exchange(query: Uint8Array, options: DnsExchangeOptions): Promise<Uint8Array> {
    const name = decodeDnsMessage(query).questions[0]?.name;
    if (name !== undefined) this.names.push(name);
    return this.inner.exchange(query, options);
  }

  close(): void {
    this.inner.close();
  }
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i += 1) {
    for (let j = 0; j < needle.length; j += 1) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

it("sends query names with no plaintext and no protobuf structure in them", async () => {
  const names: string[] = [];
  await conversation({
    serverUrl: server.url,
    gateway,
    kind: "dns",
    exchanges: () => [new CapturingExchange(new NodeDnsExchange(gateway.dns), names)],
    messages: 40,
  });
  expect(names.length).toBeGreaterThan(80);
  const payloads = names.map((name) => decodeTunnelName(name, ZONE));
  const all = new Uint8Array(payloads.reduce((sum, bytes) => sum + bytes.length, 0));
  let at = 0;
  for (const bytes of payloads) {
    all.set(bytes, at);
    at += bytes.length;
  }
  const encoder = new TextEncoder();
  // The message texts ("message 7 via dns"), the display names, and protobuf's encoding of a text field.
  for (const needle of ["message ", " via dns", "alice", "bob", "remessenger"]) {
    expect(contains(all, encoder.encode(needle))).toBe(false);
    // In the names as written, only words too long to turn up in base32 by chance.
    if (needle.trim().length >= 7) expect(names.some((name) => name.toLowerCase().includes(needle.trim()))).toBe(false);
  }
  // No query shares its first 8 bytes with another: no constant session id or counter in the clear.
  const prefixes = new Set(payloads.map((bytes) => Buffer.from(bytes.subarray(0, 8)).toString("hex")));
  expect(prefixes.size).toBe(payloads.length);
  // Byte values spread like random ones (chi-square over 256 bins, 255 degrees of freedom; p < 1e-6 above 400).
  const counts = new Array<number>(256).fill(0);
  for (const byte of all) counts[byte] = (counts[byte] ?? 0) + 1;
  const expected = all.length / 256;
  const chiSquare = counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
  expect(all.length).toBeGreaterThan(5_000);
  expect(chiSquare).toBeLessThan(400);
});
