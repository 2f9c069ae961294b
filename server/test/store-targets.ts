/**
 * The stores an end-to-end suite runs against: the embedded store, and Redis
 * (a private redis-server started for the suite).
 */
import { startRedis } from "../../scripts/harness/redis.ts";
import { startServer, type ServerOptions, type TestServer } from "../../scripts/harness/server.ts";

export const STORE_KINDS = ["embedded", "redis"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export interface ServerUnderTest {
  server: TestServer;
  stop(): Promise<void>;
}

export async function startServerOn(kind: StoreKind, options: ServerOptions = {}): Promise<ServerUnderTest> {
  if (kind === "embedded") {
    const server = await startServer(options);
    return { server, stop: () => server.cleanup() };
  }
  const redis = await startRedis();
  const server = await startServer({ ...options, redisUrl: redis.url });
  return {
    server,
    stop: async () => {
      await server.cleanup();
      await redis.stop();
    },
  };
}
