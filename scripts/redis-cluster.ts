/**
 * Starts a local Redis Cluster (3 masters + 3 replicas of the installed
 * `redis-server`, free loopback ports, a temp dir) and keeps it running until
 * Ctrl-C or SIGTERM, then stops it and removes its files.
 *
 *   npm run redis-cluster            # prints the seeds, e.g. for
 *   npm start -- --redis-cluster 127.0.0.1:7001,127.0.0.1:7002,...
 *
 * `--json` prints one line {"seeds","dir","pids"} for scripts.
 */
import { startRedisCluster } from "./harness/redis-cluster.ts";

const isJson = process.argv.includes("--json");
const cluster = await startRedisCluster();
const pids = cluster.nodes.map((node) => node.pid);
if (isJson) process.stdout.write(`${JSON.stringify({ seeds: cluster.seeds, dir: cluster.dir, pids })}\n`);
else {
  process.stdout.write(
    `Redis Cluster up: 3 masters + 3 replicas in ${cluster.dir}\n` +
      `  npm start -- --redis-cluster ${cluster.seeds}\n` +
      `Ctrl-C stops it and removes its files.\n`,
  );
}
let isStopping = false;
const stop = (): void => {
  if (isStopping) return;
  isStopping = true;
  cluster.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`could not stop the cluster cleanly: ${String(error)}\n`);
      process.exit(1);
    },
  );
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
