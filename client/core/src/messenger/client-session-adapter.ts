/**
 * Fits today's ClientSession to the MessengerSession seam: the E2E-state
 * calls go through the session's codecs under their lock (`exclusive`), as
 * the facade methods of a reworked session will do by themselves. The only
 * file that knows ClientSession's insides.
 *
 * Invariant: every session made here gets a fresh transport factory, since
 * a stopped session disposes its transport ladder.
 */
import type { TransportFactory } from "../connection/transport.ts";
import { ClientSession, type ClientSessionOptions } from "../session/client-session.ts";
import type { MessengerSession, MessengerSessionFactory, MessengerSessionOptions } from "./messenger-session.ts";

/** What every session of one messenger shares; `transports` is called once per session. */
export type ClientSessionBase = Omit<ClientSessionOptions, "transports" | "subscribe" | "sendOutbox"> & {
  transports?: () => TransportFactory;
};

/** A MessengerSession over a new ClientSession. */
export function adaptClientSession(session: ClientSession): MessengerSession {
  return {
    events: session.events,
    get status() {
      return session.status;
    },
    start: () => session.start(),
    stop: () => session.stop(),
    send: (chatId, text) => session.send(chatId, text),
    request: (kind, value, options) => session.request(kind, value, options),
    createGroup: (title, members, options) => session.createGroup(title, members, options),
    changeGroup: (chatId, change, options) => session.changeGroup(chatId, change, options),
    stopReceiving: () => {
      session.stopReceiving();
    },
    confirmAcks: (options) => session.confirmAcks(options),
    knownUser: (userId, isRefresh) => session.e2e.exclusive(() => session.e2e.knownUser(userId, isRefresh)),
    acceptIdentity: (userId) => session.e2e.exclusive(() => session.e2e.acceptIdentity(userId)),
    refreshGroup: (chatId, isForced) => session.e2e.exclusive(() => session.groups.refresh(chatId, isForced)),
    receiveGroupOperation: (message) => session.e2e.exclusive(() => session.groups.receiveOperation(message)),
    groupState: (chatId) => session.groups.groupState(chatId),
    maintainPreKeys: () => session.e2e.exclusive(() => session.e2e.maintainPreKeys(undefined)),
  };
}

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
    return adaptClientSession(session);
  };
}
