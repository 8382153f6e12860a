#!/usr/bin/env node
import { main } from "../dist/cli.js";

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === "number") process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`chorus-server: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
