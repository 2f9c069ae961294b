/**
 * The DNS tunnel a test server announced in its "listening" log line: zone,
 * gateway key and the UDP/TCP address of its DNS listener.
 */
export interface AnnouncedTunnel {
  zone: string;
  publicKey: Uint8Array;
  dns: { host: string; port: number };
}

export function announcedTunnel(logs: readonly string[]): AnnouncedTunnel {
  for (const line of logs) {
    if (!line.includes('"listening"')) continue;
    const { tunnel } = JSON.parse(line) as { tunnel?: { zone: string; publicKey: string; dns: string | null } };
    if (tunnel?.dns === undefined || tunnel.dns === null) break;
    const [host = "", port = ""] = tunnel.dns.split(/:(?=\d+$)/);
    return {
      zone: tunnel.zone,
      publicKey: new Uint8Array(Buffer.from(tunnel.publicKey, "base64url")),
      dns: { host: host.replace(/^\[|\]$/g, ""), port: Number(port) },
    };
  }
  throw new Error("the server announced no DNS tunnel listener");
}
