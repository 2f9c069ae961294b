/**
 * The stores an end-to-end suite runs against: the embedded store, and Redis
 * (a private redis-server started for the suite).
 */
import { startServer, type ServerOptions, type TestServer } from "../../scripts/harness/server.ts";
import {
  type AppendOutcome,
  FencedError,
  type GroupChange,
  type MessageDraft,
  type Store,
} from "../src/store/store.ts";

export const STORE_KINDS = ["embedded", "redis"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export interface ServerUnderTest {
  server: TestServer;
  /** Opens the server's store directly (stop the server first for the embedded one). */
  openStore(): Promise<Store>;
  stop(): Promise<void>;
}

export async function startServerOn(kind: StoreKind, options: ServerOptions = {}): Promise<ServerUnderTest> {
  if (kind === "embedded") {
    const server = await startServer(options);
    return {
      server,
      openStore: async () => {
        const { SqliteStore } = await import("../src/store/sqlite-store.ts");
        return SqliteStore.open({ dataDir: server.dataDir });
      },
      stop: () => server.cleanup(),
    };
  }
  const server = await startServer({ ...options, store: "redis" });
  const redisUrl = server.redisUrl;
  if (redisUrl === undefined) throw new Error("the redis server has no redis url");
  return {
    server,
    openStore: async () => {
      const { RedisStore } = await import("../src/store/redis-store.ts");
      return RedisStore.open({ url: redisUrl });
    },
    stop: () => server.cleanup(),
  };
}

/**
 * Appends a group operation straight into the store, past every check of the
 * server (what a compromised server can do). On Redis the server wrote under
 * a shard lease: the write takes the stored fence token, as its owner would.
 */
export function forgeGroupOperation(
  store: Store,
  chatId: string,
  draft: MessageDraft,
  change: GroupChange,
): Promise<AppendOutcome> {
  const write = (fenceToken: number) => store.applyGroupOperation(chatId, draft, change, { fenceToken });
  return write(0).catch((error: unknown) => {
    if (!(error instanceof FencedError)) throw error;
    return write(error.storedToken);
  });
}
