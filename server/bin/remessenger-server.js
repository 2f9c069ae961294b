#!/usr/bin/env node
// `npm start`: the server's entry. Plain JavaScript that any Node can parse, so
// that an older Node (the system's Node 20 in a second terminal) gets one line
// saying what to do instead of ERR_UNKNOWN_FILE_EXTENSION for the .ts sources
// that only Node 24 runs. It does not re-run itself under the project's Node:
// a parent process in between would have to relay SIGTERM for the graceful
// shutdown, and the terminal would still run the old Node for every other command.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const MIN_NODE_MAJOR = 24;
const major = Number(process.versions.node.split(".")[0]);
if (major < MIN_NODE_MAJOR) {
  const script = fileURLToPath(new URL("../../scripts/use-node-24.sh", import.meta.url));
  const fix = existsSync(script)
    ? `run \`source ${script}\` in this terminal, then npm start again`
    : "install Node 24";
  process.stderr.write(
    `remessenger server: needs Node ${MIN_NODE_MAJOR} or newer, this is Node ${process.versions.node} (${process.execPath}); ${fix}\n`,
  );
  process.exit(1);
}
// Loaded only now: a static import would fail on the old Node before the check ran.
const { main } = await import("../src/main.ts");
await main();
