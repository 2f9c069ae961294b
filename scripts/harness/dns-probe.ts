/**
 * Run inside a network namespace by resolvers.ts: exits 0 once the resolver
 * at HOST:PORT answers an SOA query for ZONE, 1 after TIMEOUT_MS.
 *
 *   node scripts/harness/dns-probe.ts HOST PORT ZONE TIMEOUT_MS
 */
import { answersWithin } from "./resolvers.ts";

const [host = "", port = "53", zone = "", timeoutMs = "20000"] = process.argv.slice(2);
const isAnswered = await answersWithin({ host, port: Number(port) }, zone, Number(timeoutMs));
if (!isAnswered) process.stderr.write(`no answer from ${host}:${port} for ${zone} within ${timeoutMs} ms\n`);
process.exit(isAnswered ? 0 : 1);
