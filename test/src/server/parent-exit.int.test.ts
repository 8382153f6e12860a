// chorus-server started by @chorus/testing exits when its parent's end of stdin closes,
// so a test runner that is killed leaves no server behind.
import { serverBinPath } from "@chorus/testing";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { expect, it } from "vitest";

it("exits cleanly when standard input closes with CHORUS_EXIT_WITH_PARENT=1", async () => {
  const child = spawn(
    process.execPath,
    [
      serverBinPath(),
      "--mem-db",
      "--ext-tcp-port",
      "0",
      "--ext-http-port",
      "0",
      "--int-tcp-port",
      "0",
      "--int-http-port",
      "0",
    ],
    { env: { ...process.env, CHORUS_EXIT_WITH_PARENT: "1" }, stdio: ["pipe", "pipe", "pipe"] },
  );
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const lines = createInterface({ input: child.stdout });
  const stopping: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no ready line within 20 s")), 20_000);
    lines.on("line", (line) => {
      if (line.includes('"msg":"stopping"')) stopping.push(line);
      if (line.includes('"msg":"node ready"')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.stdin.end(); // what the kernel does when the parent dies
  const code = await Promise.race([
    exited,
    new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 15_000)),
  ]);
  if (code === "still running") child.kill("SIGKILL");
  expect(code).toBe(0);
  expect(stopping.join("")).toContain("parent exited");
});

it("keeps running while standard input stays open", async () => {
  const child = spawn(
    process.execPath,
    [
      serverBinPath(),
      "--mem-db",
      "--ext-tcp-port",
      "0",
      "--ext-http-port",
      "0",
      "--int-tcp-port",
      "0",
      "--int-http-port",
      "0",
    ],
    { env: { ...process.env, CHORUS_EXIT_WITH_PARENT: "1" }, stdio: ["pipe", "pipe", "pipe"] },
  );
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve) =>
    lines.on("line", (l) => l.includes('"node ready"') && resolve()),
  );
  expect(child.exitCode).toBeNull();
  child.kill("SIGTERM");
  expect(await exited).toBe(0);
});
