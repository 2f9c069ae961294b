/**
 * The part of @xmpp/client (which ships no types) that the Prosody baseline
 * uses: a client over TCP, its events, sending stanzas and IQ round trips.
 */
declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";

  /** An XML element (ltx), as the client parses and builds stanzas. */
  export interface Element {
    readonly name: string;
    readonly attrs: Record<string, string | undefined>;
    is(name: string, xmlns?: string): boolean;
    getChildText(name: string, xmlns?: string): string | null;
    toString(): string;
  }

  export function xml(
    name: string,
    attrs?: Record<string, string> | null,
    ...children: Array<Element | string>
  ): Element;

  export interface ClientOptions {
    /** e.g. xmpp://127.0.0.1:5222 */
    service: string;
    domain: string;
    username: string;
    password: string;
    /** Chooses the SASL mechanism: calls `authenticate` with credentials and a mechanism name. */
    credentials?: (
      authenticate: (credentials: { username: string; password: string }, mechanism: string) => Promise<void>,
      mechanisms: readonly string[],
    ) => Promise<void>;
    resource?: string;
    /** Stream open/close timeout in ms (default 2000). */
    timeout?: number;
  }

  /** Emits "online", "stanza" (Element), "error" (Error), "offline", "status". */
  export interface Client extends EventEmitter {
    readonly status: string;
    /** The TCP socket while connected. */
    readonly socket: { setNoDelay(noDelay: boolean): void } | null | undefined;
    readonly reconnect: { stop(): void };
    readonly iqCaller: { request(element: Element, timeoutMs?: number): Promise<Element> };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
  }

  export function client(options: ClientOptions): Client;
}
