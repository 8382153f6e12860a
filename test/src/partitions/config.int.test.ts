// A node with a mistyped partition flag set refuses to start (exit code 2), naming the flags.
import { spawn } from "node:child_process";
import { serverBinPath } from "@chorus/testing";
import { describe, expect, it } from "vitest";

const EXIT_DEADLINE_MS = 15_000;
// The environment without any CHORUS_* variable of the developer's shell.
const CLEAN_ENV = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("CHORUS_")),
);

/** Runs chorus-server with `args` until it exits; its exit code and stderr. */
function runServer(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [serverBinPath(), "--mem-db", "--ext-tcp-port", "0", "--ext-http-port", "0", ...args],
      { env: { ...CLEAN_ENV, ...env }, stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`chorus-server ${args.join(" ")} did not exit within ${EXIT_DEADLINE_MS} ms`),
      );
    }, EXIT_DEADLINE_MS);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe("chorus-server --partition / --partitions", () => {
  it.each([
    [
      "its own name missing from the list",
      ["--partition", "esat", "--partitions", "east,west"],
      {},
      /--partition esat is not one of --partitions east,west/,
    ],
    ["--partition without --partitions", ["--partition", "east"], {}, /needs --partitions A,B,C/],
    [
      "--partitions without --partition",
      ["--partitions", "east,west"],
      {},
      /needs --partition NAME/,
    ],
    [
      "an invalid name",
      ["--partition", "east", "--partitions", "east,West"],
      {},
      /invalid value for --partitions: partition name "West"/,
    ],
    [
      "a name listed twice, from the environment",
      [],
      { CHORUS_PARTITION: "east", CHORUS_PARTITIONS: "east,east" },
      /partition "east" is listed twice/,
    ],
  ])("exits 2 on %s", async (_what, args, env, message) => {
    const { code, stderr } = await runServer(args, env);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});
