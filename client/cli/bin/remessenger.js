#!/usr/bin/env node
// The `remessenger` command. Node 24 runs the TypeScript sources directly; an
// older Node (the system's Node 20 in a second terminal) gets one line saying
// what to do instead of ERR_UNKNOWN_FILE_EXTENSION, so this file is plain
// JavaScript and loads the sources only after the check.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const MIN_NODE_MAJOR = 24;
const major = Number(process.versions.node.split(".")[0]);
if (major < MIN_NODE_MAJOR) {
  const script = fileURLToPath(new URL("../../../scripts/use-node-24.sh", import.meta.url));
  const fix = existsSync(script) ? `run \`source ${script}\` in this terminal and try again` : "install Node 24";
  process.stderr.write(
    `remessenger: needs Node ${MIN_NODE_MAJOR} or newer, this is Node ${process.versions.node} (${process.execPath}); ${fix}\n`,
  );
  process.exit(1);
}
const { main } = await import("../src/main.ts");
await main();
