/**
 * A loopback port that was free a moment ago. Another process may still take
 * it before the caller binds, so callers that spawn a server retry on a clash.
 */
import { createServer } from "node:net";

export function freeLoopbackPort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => {
        if (port === 0) reject(new Error("could not learn the probed port"));
        else resolve(port);
      });
    });
  });
}
