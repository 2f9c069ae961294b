import { type ClientStore, type KeyVault, type Messenger, createProfile } from "@remessenger/client-core";
import { openProfile, storedDeviceSecrets } from "@remessenger/client-core";

/**
 * A whole client: opens the profile kept in `store` (or registers a new user), shows the
 * connection and every message, and can say hello. An app passes IndexedDbClientStore and
 * IndexedDbKeyVault (both survive reloads); a bot or a test, MemoryClientStore and MemoryKeyVault.
 */
export async function minimalClient(
  store: ClientStore,
  vault: KeyVault,
  serverUrl: string,
  name: string,
  print: (line: string) => void,
) {
  const secrets = storedDeviceSecrets(store, vault);
  const join = { kind: "register" } as const;
  const messenger: Messenger = (await store.getProfile())
    ? await openProfile({ store, secrets })
    : await createProfile({ store, secrets, endpoints: { serverUrl }, displayName: name, join, timeoutMs: 10_000 });
  messenger.connection.subscribe((status) => print(`[${status.state}] ${status.transport ?? "-"}`));
  messenger.events.on("message", ({ message }) =>
    print(`${message.senderName ?? message.senderUserId}: ${message.text}`),
  );
  await messenger.start();
  const sayHello = async (userId: string) => {
    const { chatId } = await messenger.openDirectChat(userId);
    await messenger.send(chatId, "hello");
  };
  return { messenger, userId: messenger.profile.userId, sayHello };
}
