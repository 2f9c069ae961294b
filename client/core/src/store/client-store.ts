/**
 * The ClientStore: everything a client keeps on its device, as the
 * intersection of the ports split by concern — ProfileStore (who this device
 * is), OutboxStore (what it wrote, with receipts), TimelineStore (what it
 * received, read marks, chat activity), E2eStateStore (the end-to-end layer's
 * versioned records) and DirectoryStore (chats and contacts) — plus close().
 * A consumer that needs one concern takes that port.
 *
 * Adapters: MemoryClientStore (tests, load generators), SqliteClientStore
 * (the Node CLI, ./node entry) and IndexedDbClientStore (browsers, WebViews).
 * Each runs every port's contract suite (client-store-contract.ts). The one
 * transaction notion (an E2E write set committed with its message) is
 * described in e2e-state-store.ts.
 */
import type { DirectoryStore } from "./directory-store.ts";
import type { E2eStateStore } from "./e2e-state-store.ts";
import type { OutboxStore } from "./outbox-store.ts";
import type { ProfileStore } from "./profile-store.ts";
import type { TimelineStore } from "./timeline-store.ts";

export type { ChatKindName, ChatSummary, ContactRecord, DirectoryStore } from "./directory-store.ts";
export { toChatSummary } from "./directory-store.ts";
export type { E2eRecord, E2eStateStore, E2eWrite } from "./e2e-state-store.ts";
export { StaleE2eStateError } from "./e2e-state-store.ts";
export type {
  NewOutboxMessage,
  OutboxEntry,
  OutboxProblem,
  OutboxQuery,
  OutboxState,
  OutboxStore,
} from "./outbox-store.ts";
export type { DeviceProfile, ProfileStore } from "./profile-store.ts";
export type { ChatActivity, ReceivedMessage, TimelineStore } from "./timeline-store.ts";
export { isShownToUser } from "./timeline-store.ts";

export interface ClientStore extends ProfileStore, OutboxStore, TimelineStore, E2eStateStore, DirectoryStore {
  close(): Promise<void>;
}
