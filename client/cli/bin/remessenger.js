#!/usr/bin/env node
// The `remessenger` command. Node 24 runs the TypeScript sources directly.
import { main } from "../src/main.ts";

await main();
