#!/usr/bin/env node
import { main } from "./main.js";

/** Leave even if something still holds the event loop once the command is done. */
const EXIT_GRACE_MS = 2_000;

process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  // The reader went away (e.g. `chorus read s | head`): nothing more to say.
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
process.exitCode = code;
setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
