/**
 * Makes the ClientSession behind a Messenger: ClientSession is itself a
 * MessengerSession (its E2E-state methods take the E2E lock inside), so this
 * file only builds one per start or resume from the options all of them share.
 *
 * Invariant: every session made here gets a fresh transport factory, since
 * a stopped session disposes its transport ladder.
 */
import type { TransportFactory } from "../connection/transport.ts";
import { ClientSession, type ClientSessionOptions } from "../session/client-session.ts";
import type { MessengerSessionFactory, MessengerSessionOptions } from "./messenger-session.ts";

/** What every session of one messenger shares; `transports` is called once per session. */
export type ClientSessionBase = Omit<ClientSessionOptions, "transports" | "subscribe" | "sendOutbox"> & {
  transports?: () => TransportFactory;
};

/** The factory a Messenger uses to make (and, at every resume, remake) its ClientSession. */
export function clientSessionFactory(base: ClientSessionBase): MessengerSessionFactory {
  return (options: MessengerSessionOptions) => {
    const { transports, timing, ...rest } = base;
    const session = new ClientSession({
      ...rest,
      ...(transports === undefined ? {} : { transports: transports() }),
      ...(options.subscribe === undefined ? {} : { subscribe: options.subscribe }),
      ...(options.sendOutbox === undefined ? {} : { sendOutbox: options.sendOutbox }),
      timing: { ...timing, ...(options.outboxPollMs === undefined ? {} : { outboxPollMs: options.outboxPollMs }) },
    });
    return session;
  };
}
