import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { onProcessExit } from "./on-exit.js";

describe("onProcessExit", () => {
  it("holds any number of cleanups under one exit listener, and forgets one on request", () => {
    const forgets = Array.from({ length: 20 }, () => onProcessExit(() => undefined));
    const listeners = process.listenerCount("exit");
    const more = Array.from({ length: 20 }, () => onProcessExit(() => undefined));
    expect(process.listenerCount("exit")).toBe(listeners);
    for (const forget of [...forgets, ...more]) forget();
  });

  it("runs the cleanups still registered when the process exits, even after one throws", () => {
    const module = fileURLToPath(new URL("../dist/on-exit.js", import.meta.url));
    const script = `
      const { onProcessExit } = await import(${JSON.stringify(module)});
      onProcessExit(() => process.stdout.write("first "));
      onProcessExit(() => { throw new Error("a failing cleanup"); });
      const forget = onProcessExit(() => process.stdout.write("forgotten "));
      onProcessExit(() => process.stdout.write("last"));
      forget();
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 10_000,
    });
    expect(child.stderr).toBe("");
    expect(child.status).toBe(0);
    expect(child.stdout).toBe("first last");
  });
});
