import { describe, expect, it } from "vitest";
import { initialConnectionStatus, type ConnectionStatus } from "../connection/connection-state.ts";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import type { SessionEvents } from "../session/client-session.ts";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { Messenger } from "./messenger.ts";
import { MessengerNotRunningError } from "./session-lifecycle.ts";
import type { MessengerSession } from "./messenger-session.ts";
import { ALICE, ME, received } from "./test-records.ts";

/** A session that only records its lifecycle; like ClientSession, it cannot start twice. */
class FakeSession {
  readonly events = new TypedEmitter<SessionEvents>(() => undefined);
  status: ConnectionStatus = initialConnectionStatus(0);
  isStarted = false;
  isStopped = false;

  start(): Promise<void> {
    if (this.isStarted) return Promise.reject(new Error("the session was started already"));
    this.isStarted = true;
    this.setState("connected");
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.isStopped = true;
    this.setState("stopped");
    return Promise.resolve();
  }

  setState(state: ConnectionStatus["state"]): void {
    this.status = { ...this.status, state };
    this.events.emit("connection", this.status);
  }
}

function unused(): never {
  throw new Error("not used by this test");
}

function asMessengerSession(fake: FakeSession): MessengerSession {
  return {
    events: fake.events,
    get status() {
      return fake.status;
    },
    start: () => fake.start(),
    stop: () => fake.stop(),
    send: unused,
    request: unused,
    createGroup: unused,
    changeGroup: unused,
    stopReceiving: unused,
    confirmAcks: unused,
    knownUser: unused,
    acceptIdentity: unused,
    refreshGroup: unused,
    receiveGroupOperation: unused,
    groupState: unused,
    maintainPreKeys: unused,
  };
}

async function messengerWithFakes(): Promise<{
  messenger: Messenger;
  sessions: FakeSession[];
  store: MemoryClientStore;
}> {
  const store = new MemoryClientStore();
  const profile = { serverUrl: "ws://x", userId: ME, deviceId: "d-me", displayName: "me", registeredAtMs: 0 };
  await store.saveProfile(profile);
  await store.saveContacts([{ userId: ALICE, displayName: "Alice" }]);
  const sessions: FakeSession[] = [];
  const messenger = new Messenger({
    store,
    profile,
    signer: await nobleEd25519.signerFromSeed(nobleEd25519.generateSeed()),
    sessions: () => {
      const fake = new FakeSession();
      sessions.push(fake);
      return asMessengerSession(fake);
    },
  });
  return { messenger, sessions, store };
}

describe("Messenger lifecycle", () => {
  it("suspends and resumes any number of times, each resume on a fresh session", async () => {
    const { messenger, sessions } = await messengerWithFakes();
    const states: string[] = [];
    messenger.connection.subscribe((s) => states.push(s.state));
    await messenger.start();
    for (let round = 0; round < 3; round += 1) {
      await messenger.suspend();
      expect(messenger.lifecycle.value).toBe("suspended");
      await messenger.resume();
      expect(messenger.lifecycle.value).toBe("running");
    }
    expect(sessions).toHaveLength(4);
    expect(sessions.slice(0, 3).every((s) => s.isStopped)).toBe(true);
    expect(sessions[3]?.isStopped).toBe(false);
    expect(messenger.connection.value.state).toBe("connected");
    expect(states.filter((s) => s === "connected")).toHaveLength(4);
    await messenger.stop();
    await messenger.resume();
    expect(messenger.lifecycle.value).toBe("stopped");
    await expect(messenger.start()).rejects.toThrow(/stopped/);
  });

  it("forwards events of the running session only, and refuses calls while suspended", async () => {
    const { messenger, sessions } = await messengerWithFakes();
    const texts: string[] = [];
    messenger.events.on("message", ({ message }) => texts.push(`${message.senderName ?? "?"}: ${message.text}`));
    await messenger.start();
    const first = sessions[0];
    first?.events.emit("message", { message: received("c-1", 1), isOwnDevice: false });
    // Synchronously: a listener may stop receiving before the next message is stored.
    expect(texts).toEqual(["Alice: hello 1"]);
    await messenger.suspend();
    first?.events.emit("message", { message: received("c-1", 2), isOwnDevice: false });
    expect(texts).toHaveLength(1);
    expect(() => messenger.send("c-1", "hi")).toThrow(MessengerNotRunningError);
    await messenger.resume();
    sessions[1]?.events.emit("message", { message: received("c-1", 3), isOwnDevice: false });
    expect(texts).toEqual(["Alice: hello 1", "Alice: hello 3"]);
    await messenger.stop();
  });

  it("keeps the chat list current as messages arrive and markRead moves the mark", async () => {
    const { messenger, sessions, store } = await messengerWithFakes();
    await store.saveChats([{ chatId: "c-1", kind: "direct", title: "", memberUserIds: [ME, ALICE] }]);
    await messenger.start();
    const chats = messenger.chats();
    await store.saveReceived(received("c-1", 1));
    await store.saveReceived(received("c-1", 2));
    sessions[0]?.events.emit("message", { message: received("c-1", 2), isOwnDevice: false });
    await messenger.refreshChatList();
    expect(chats.value[0]).toMatchObject({ title: "Alice", unreadCount: 2, lastMessage: { text: "hello 2" } });
    expect(await messenger.markRead("c-1")).toBe(true);
    expect(chats.value[0]?.unreadCount).toBe(0);
    expect(await messenger.markRead("c-1", 1)).toBe(false);
    await messenger.stop();
  });
});
