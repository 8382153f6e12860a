// chorus-server started by @chorus/testing exits when its parent's end of stdin closes,
// so a test runner that is killed leaves no server behind.
import { serverBinPath } from "@chorus/testing";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { expect, it } from "vitest";

/** A server with CHORUS_EXIT_WITH_PARENT=1 and piped stdin, resolved once it is ready. */
async function startWatchedServer() {
  const child = spawn(
    process.execPath,
    [
      serverBinPath(),
      "--mem-db",
      ...["ext-tcp", "ext-http", "int-tcp", "int-http"].flatMap((p) => [`--${p}-port`, "0"]),
    ],
    { env: { ...process.env, CHORUS_EXIT_WITH_PARENT: "1" }, stdio: ["pipe", "pipe", "pipe"] },
  );
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no ready line within 20 s")), 20_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line);
      if (line.includes('"msg":"node ready"')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  /** The exit code, or "still running" after `ms` (the process is then killed). */
  const exitWithin = async (ms: number): Promise<number | null | "still running"> => {
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<"still running">(
        (resolve) => (timer = setTimeout(() => resolve("still running"), ms)),
      ),
    ]);
    clearTimeout(timer);
    if (code === "still running") child.kill("SIGKILL");
    return code;
  };
  return { child, lines, exitWithin };
}

it("exits cleanly when standard input closes with CHORUS_EXIT_WITH_PARENT=1", async () => {
  const server = await startWatchedServer();
  server.child.stdin.end(); // what the kernel does when the parent dies
  expect(await server.exitWithin(15_000)).toBe(0);
  expect(server.lines.filter((l) => l.includes('"msg":"stopping"')).join("")).toContain(
    "parent exited",
  );
});

it("keeps running while standard input stays open", async () => {
  const server = await startWatchedServer();
  expect(server.child.exitCode).toBeNull();
  server.child.kill("SIGTERM");
  expect(await server.exitWithin(15_000)).toBe(0);
});
