/**
 * The DNS gateway of a real server process on its UDP and TCP listener:
 * malformed and foreign queries get DNS error codes and a flood of random
 * packets and broken TCP streams leaves it serving; a source over its rate
 * gets REFUSED over UDP and 429 with Retry-After over DoH while other
 * sources go on. (The gateway's rules in depth, and 100k fuzzed packets,
 * are in server/src/edge/tunnel-gateway.test.ts without sockets.)
 */
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DNS_TYPE_ANY,
  DNS_TYPE_SOA,
  DNS_TYPE_TXT,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  decodeDnsMessage,
  encodeDnsQuery,
  encodeTunnelName,
} from "@remessenger/protocol";
import { type AnnouncedTunnel, announcedTunnel } from "../../scripts/harness/tunnel.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";

const ZONE = "t.example";
const ANSWER_TIMEOUT_MS = 5_000;
const HEADER = [0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];

function query(name: string, type: number): Uint8Array {
  return encodeDnsQuery({ id: 0x4242, name, type, ednsUdpBytes: 1232 });
}

/** The malformed and foreign queries of the issue, each with the rcode it must get. */
const CASES: { what: string; bytes: Uint8Array; rcode: number }[] = [
  { what: "bad base32", bytes: query(`not-base32!.${ZONE}`, DNS_TYPE_TXT), rcode: RCODE_NXDOMAIN },
  {
    what: "a session the gateway does not know",
    bytes: query(encodeTunnelName(new Uint8Array(randomBytes(60)), ZONE), DNS_TYPE_TXT),
    rcode: RCODE_NXDOMAIN,
  },
  {
    what: "a label over 63 bytes",
    bytes: new Uint8Array([...HEADER, 64, ...new Array<number>(64).fill(97), 0, 0, 16, 0, 1]),
    rcode: RCODE_FORMERR,
  },
  {
    what: "a name over 255 bytes",
    bytes: new Uint8Array([
      ...HEADER,
      ...Array.from({ length: 5 }, () => [60, ...new Array<number>(60).fill(97)]).flat(),
      0,
      0,
      16,
      0,
      1,
    ]),
    rcode: RCODE_FORMERR,
  },
  { what: "a compression loop", bytes: new Uint8Array([...HEADER, 0xc0, 12, 0, 16, 0, 1]), rcode: RCODE_FORMERR },
  { what: "garbage after a header", bytes: new Uint8Array([...HEADER, 200, 1, 2]), rcode: RCODE_FORMERR },
  { what: "another zone", bytes: query("example.com", DNS_TYPE_TXT), rcode: RCODE_REFUSED },
  { what: "ANY", bytes: query(ZONE, DNS_TYPE_ANY), rcode: RCODE_NOTIMP },
];

/** One query over UDP from `localAddress`; undefined when no answer comes. */
async function askUdp(
  target: { host: string; port: number },
  bytes: Uint8Array,
  localAddress = "127.0.0.1",
): Promise<Uint8Array | undefined> {
  const socket = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve) => socket.bind(0, localAddress, resolve));
    return await new Promise<Uint8Array | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ANSWER_TIMEOUT_MS);
      socket.on("message", (message) => {
        clearTimeout(timer);
        resolve(new Uint8Array(message));
      });
      socket.send(bytes, target.port, target.host);
    });
  } finally {
    socket.close();
  }
}

/** Queries over one TCP connection (2-byte length prefix); their answers in order of arrival. */
async function askTcp(target: { host: string; port: number }, queries: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const socket = net.connect(target.port, target.host);
  const answers: Uint8Array[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const timer = setTimeout(() => {
        reject(new Error(`${answers.length} of ${queries.length} TCP answers`));
      }, ANSWER_TIMEOUT_MS);
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          answers.push(new Uint8Array(buffered.subarray(2, 2 + buffered.readUInt16BE(0))));
          buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
        }
        if (answers.length === queries.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      socket.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      for (const bytes of queries) {
        const header = Buffer.alloc(2);
        header.writeUInt16BE(bytes.length);
        socket.write(Buffer.concat([header, bytes]));
      }
    });
    return answers;
  } finally {
    socket.destroy();
  }
}

/** Resolves when the server closes the connection after `bytes`. */
async function closedAfter(target: { host: string; port: number }, bytes: Uint8Array): Promise<void> {
  const socket = net.connect(target.port, target.host);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server kept the connection")), ANSWER_TIMEOUT_MS);
      socket.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.on("error", () => {
        // a reset is a close too
      });
      socket.write(bytes);
    });
  } finally {
    socket.destroy();
  }
}

function rcodeOf(bytes: Uint8Array | undefined): number | undefined {
  return bytes === undefined ? undefined : decodeDnsMessage(bytes).rcode;
}

describe("the DNS gateway on real sockets", () => {
  let server: TestServer;
  let tunnel: AnnouncedTunnel;

  beforeAll(async () => {
    server = await startServer({
      extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "0"],
    });
    tunnel = announcedTunnel(server.logs);
  });

  afterAll(async () => {
    await server.cleanup();
  });

  it("answers malformed and foreign queries with DNS error codes, over UDP and over TCP", async () => {
    for (const { what, bytes, rcode } of CASES) {
      expect(rcodeOf(await askUdp(tunnel.dns, bytes)), `${what} over UDP`).toBe(rcode);
    }
    const overTcp = await askTcp(
      tunnel.dns,
      CASES.map((c) => c.bytes),
    );
    expect(overTcp.map((bytes) => decodeDnsMessage(bytes).rcode).sort()).toEqual(CASES.map((c) => c.rcode).sort());
  });

  it("keeps serving after 5,000 random UDP packets and broken TCP streams", async () => {
    const flood = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => flood.bind(0, "127.0.0.1", resolve));
    flood.on("message", () => {
      // answers to the flood: not looked at
    });
    for (let i = 0; i < 5_000; i += 1) {
      const bytes = randomBytes(i % 600);
      await new Promise<void>((resolve) => flood.send(bytes, tunnel.dns.port, tunnel.dns.host, () => resolve()));
    }
    flood.close();
    // A zero-length message ends its connection; random bytes are harmless.
    await closedAfter(tunnel.dns, new Uint8Array([0, 0]));
    const junk = net.connect(tunnel.dns.port, tunnel.dns.host);
    junk.on("error", () => {
      // the server may reset it
    });
    junk.write(randomBytes(3_000));
    junk.destroy();

    // Asked the way a stub resolver asks, again after a silent timeout: the gateway may still be
    // working through the flood (it answers each of those packets) on a loaded machine.
    let answer: Uint8Array | undefined;
    for (let attempt = 1; attempt <= 5 && answer === undefined; attempt += 1) {
      answer = await askUdp(tunnel.dns, query(ZONE, DNS_TYPE_SOA));
    }
    expect(rcodeOf(answer)).toBe(RCODE_NOERROR);
    const [soa] = await askTcp(tunnel.dns, [query(ZONE, DNS_TYPE_SOA)]);
    expect(rcodeOf(soa)).toBe(RCODE_NOERROR);
    expect((await fetch(`${server.url}/healthz`)).ok).toBe(true);
  });
});

describe("the DNS gateway's rate limit per source", () => {
  let server: TestServer;
  let tunnel: AnnouncedTunnel;

  beforeAll(async () => {
    server = await startServer({
      extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "5"],
    });
    tunnel = announcedTunnel(server.logs);
  });

  afterAll(async () => {
    await server.cleanup();
  });

  it("refuses a source over its rate (UDP: REFUSED, DoH: 429 with Retry-After) and serves the others", async () => {
    // 5 a second with a burst of 10: 40 queries in a row cannot all pass.
    const rcodes: (number | undefined)[] = [];
    for (let i = 0; i < 40; i += 1) rcodes.push(rcodeOf(await askUdp(tunnel.dns, query(ZONE, DNS_TYPE_SOA))));
    expect(rcodes).toContain(RCODE_NOERROR);
    expect(rcodes).toContain(RCODE_REFUSED);
    expect(rcodes.every((rcode) => rcode === RCODE_NOERROR || rcode === RCODE_REFUSED)).toBe(true);

    // Another source address has a bucket of its own.
    expect(rcodeOf(await askUdp(tunnel.dns, query(ZONE, DNS_TYPE_SOA), "127.0.0.2"))).toBe(RCODE_NOERROR);

    const statuses: number[] = [];
    let retryAfter: string | null = null;
    const dns = Buffer.from(query(ZONE, DNS_TYPE_SOA)).toString("base64url");
    for (let i = 0; i < 40 && retryAfter === null; i += 1) {
      const response = await fetch(`${server.url}/dns-query?dns=${dns}`);
      statuses.push(response.status);
      if (response.status === 429) retryAfter = response.headers.get("retry-after");
      await response.arrayBuffer();
    }
    expect(statuses).toContain(429);
    expect(Number(retryAfter)).toBeGreaterThan(0);
  });
});
