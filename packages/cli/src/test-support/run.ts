/** Runs the built `chorus` command in a child process, for the command line's own tests. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../dist/bin.js", import.meta.url));
/** Longest a `chorus` run may take before it is killed and the test fails. */
export const RUN_TIMEOUT_MS = 20_000;

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A running `chorus` process: its output so far, and its end. */
export interface Running {
  readonly child: ReturnType<typeof spawn>;
  stdout(): string;
  stderr(): string;
  readonly result: Promise<Result>;
}

/** Starts `chorus args` (CHORUS_CONNECTION of this process left out, `env` added). */
export function startChorus(args: string[], env: Record<string, string> = {}): Running {
  const { CHORUS_CONNECTION: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const begun = Date.now();
  const result = new Promise<Result>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`chorus ${args.join(" ")} did not exit within ${RUN_TIMEOUT_MS} ms`));
    }, RUN_TIMEOUT_MS);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - begun });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, result };
}

/** Runs `chorus args` to its end. */
export function runChorus(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return startChorus(args, env).result;
}
