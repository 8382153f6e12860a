// The `chorus` CLI run as a real process, for tests that drive it as an operator would.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const CLI_BIN = join(
  dirname(createRequire(import.meta.url).resolve("@chorus/cli/package.json")),
  "bin",
  "chorus.js",
);

export interface ChorusProcess {
  readonly pid: number;
  /** Whether the process has exited. */
  exited(): boolean;
  /** Everything it printed, once it exits 0; rejects with that output otherwise. */
  readonly done: Promise<string>;
}

/** Starts `chorus args`; SIGKILLs it when it has not exited within `timeoutMs`. */
export function startChorus(args: readonly string[], timeoutMs: number): ChorusProcess {
  const child = spawn(process.execPath, [CLI_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let exited = false;
  child.stdout.setEncoding("utf8").on("data", (t: string) => (output += t));
  child.stderr.setEncoding("utf8").on("data", (t: string) => (output += t));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const done = once(child, "close").then(([code]) => {
    exited = true;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`chorus ${args.join(" ")} exited with ${code}: ${output}`);
    return output;
  });
  done.catch(() => undefined); // surfaces where awaited
  return { pid: child.pid!, exited: () => exited, done };
}
