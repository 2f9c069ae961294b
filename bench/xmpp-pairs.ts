/**
 * The XMPP baseline's side of the spine benchmark: clients of a real XMPP
 * server (Prosody) over c2s TCP on loopback, driven by @xmpp/client in the same
 * pair load as ours (pair-load.ts): 200-character chat messages to the
 * partner's bare JID, so the server routes them as it routes any message.
 *
 * XMPP does not answer a message, so a message is in flight until the partner
 * received it. Each client sends initial presence (bare-JID messages go to
 * available resources) and no stream management, so the server only relays:
 * nothing is stored, nothing is acked. Prosody keeps its default network
 * settings; they made no measurable difference here (it is CPU-bound).
 */
import { randomBytes } from "node:crypto";
import { type Client, type Element, client, xml } from "@xmpp/client";
import type { LoadRun, WindowedSender } from "./pair-load.ts";

export const BODY_CHARS = 200;
const COUNTER_DIGITS = 10;
const SETUP_CONCURRENCY = 25;
const REQUEST_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

export interface XmppEndpoint {
  host: string;
  port: number;
  domain: string;
}

export interface XmppPairs {
  readonly clientCount: number;
  /** Stanzas or client errors the load did not expect (should stay 0). */
  readonly unexpected: number;
  attach(run: LoadRun): void;
  close(): Promise<void>;
}

/** Logs in as `usernames` (an even count; 2k and 2k+1 are partners). */
export async function connectXmppPairs(
  endpoint: XmppEndpoint,
  usernames: readonly string[],
  password: string,
  signal: AbortSignal,
): Promise<XmppPairs> {
  if (usernames.length < 2 || usernames.length % 2 !== 0) {
    throw new Error(`clients come in pairs; got ${usernames.length}`);
  }
  const clients: XmppLoadClient[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.close()));
  };
  try {
    for (let start = 0; start < usernames.length; start += SETUP_CONCURRENCY) {
      signal.throwIfAborted();
      const batch = usernames.slice(start, start + SETUP_CONCURRENCY).map((username, i) => {
        const partner = usernames[(start + i) ^ 1];
        if (partner === undefined) throw new Error(`${username} has no partner`);
        const loadClient = new XmppLoadClient(endpoint, username, password, `${partner}@${endpoint.domain}`);
        clients.push(loadClient);
        return loadClient.connect();
      });
      await Promise.all(batch);
    }
    // A ping answered after the presence means the server took the presence in.
    await Promise.all(clients.map((c) => c.ping()));
    return {
      clientCount: clients.length,
      get unexpected() {
        return clients.reduce((sum, c) => sum + c.unexpected, 0);
      },
      attach: (run) => {
        for (const c of clients) c.attachSender(run);
        clients.forEach((c, index) => {
          const partner = clients[index ^ 1];
          if (partner === undefined) throw new Error(`client ${index} has no partner`);
          c.listen(partner);
        });
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

class XmppLoadClient {
  private readonly xmpp: Client;
  private readonly domain: string;
  private readonly partnerJid: string;
  private readonly filler = randomBytes(BODY_CHARS)
    .toString("base64url")
    .slice(0, BODY_CHARS - COUNTER_DIGITS);
  private outbound: WindowedSender | undefined;
  unexpected = 0;

  constructor(endpoint: XmppEndpoint, username: string, password: string, partnerJid: string) {
    this.domain = endpoint.domain;
    this.partnerJid = partnerJid;
    this.xmpp = client({
      service: `xmpp://${endpoint.host}:${endpoint.port}`,
      domain: endpoint.domain,
      username,
      password,
      // PLAIN (allowed on loopback by our Prosody config): xmpp.js computes SCRAM's
      // PBKDF2 in JavaScript, ~0.5 s a login, which would make setup take minutes.
      credentials: (authenticate) => authenticate({ username, password }, "PLAIN"),
      resource: "bench",
      timeout: REQUEST_TIMEOUT_MS,
    });
    // A benchmark must not reconnect behind our back: a drop shows as undelivered.
    this.xmpp.reconnect.stop();
    this.xmpp.on("error", () => {
      this.unexpected += 1;
    });
  }

  async connect(): Promise<void> {
    await this.xmpp.start();
    // As ws does for our clients: small stanzas go out at once, not after Nagle's wait.
    this.xmpp.socket?.setNoDelay(true);
    await this.xmpp.send(xml("presence"));
  }

  async ping(): Promise<void> {
    await this.xmpp.iqCaller.request(
      xml("iq", { type: "get", to: this.domain }, xml("ping", { xmlns: "urn:xmpp:ping" })),
      REQUEST_TIMEOUT_MS,
    );
  }

  attachSender(run: LoadRun): void {
    this.outbound = run.addSender((counter) => {
      this.transmit(counter);
    }, false);
  }

  listen(partner: XmppLoadClient): void {
    this.xmpp.on("stanza", (stanza: Element) => {
      this.onStanza(stanza, partner.outbound);
    });
  }

  /** Closes the stream; a stream that will not close in time is left to the server's stop. */
  async close(): Promise<void> {
    if (this.xmpp.status === "offline") return;
    const timer = AbortSignal.timeout(STOP_TIMEOUT_MS);
    await Promise.race([
      this.xmpp.stop().then(
        () => undefined,
        () => {
          this.unexpected += 1;
        },
      ),
      new Promise<void>((resolve) => timer.addEventListener("abort", () => resolve(), { once: true })),
    ]);
  }

  private transmit(counter: number): void {
    const body = String(counter).padStart(COUNTER_DIGITS, "0") + this.filler;
    this.xmpp.send(xml("message", { to: this.partnerJid, type: "chat" }, xml("body", null, body))).catch(() => {
      this.outbound?.failed(counter);
    });
  }

  private onStanza(stanza: Element, inbound: WindowedSender | undefined): void {
    const receivedMs = performance.now();
    if (!stanza.is("message")) return;
    const body = stanza.getChildText("body");
    const counter = body === null ? Number.NaN : Number(body.slice(0, COUNTER_DIGITS));
    if (!Number.isInteger(counter)) {
      this.unexpected += 1;
      return;
    }
    // A bounce of our own message (partner gone): it will not be delivered.
    if (stanza.attrs["type"] === "error") this.outbound?.failed(counter);
    else inbound?.delivered(counter, receivedMs);
  }
}
