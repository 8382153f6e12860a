import { ChorusClient, jsonEvent } from "@chorus/client";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startNode, type TestNode } from "./index.js";

let node: TestNode | undefined;
afterEach(async () => {
  await node?.stop();
  node = undefined;
});

async function roundTrip(n: TestNode, stream: string): Promise<number> {
  const client = new ChorusClient(n.connectionString);
  try {
    await client.appendToStream(stream, jsonEvent({ type: "T", data: { ok: true } }));
    let count = 0;
    for await (const _ of client.readStream(stream)) count++;
    return count;
  } finally {
    await client.close();
  }
}

describe("startNode", () => {
  it.each([
    ["a child process", false],
    ["in process", true],
  ])("starts a node %s that keeps its data across restart()", async (_name, inProcess) => {
    node = await startNode({ inProcess });
    expect(node.running).toBe(true);
    if (inProcess) expect(node.pid).toBeUndefined();
    else expect(node.pid).toBeTypeOf("number");
    expect(await roundTrip(node, "s")).toBe(1);
    const port = node.extHttp.port;
    await node.restart();
    expect(node.extHttp.port).toBe(port);
    expect(await roundTrip(node, "s")).toBe(2);
  });

  it("refuses pause() for an in-process node with a clear error", async () => {
    node = await startNode({ inProcess: true, memDb: true });
    expect(() => node!.pause()).toThrow(/need a child process/);
  });

  it("reports a node that cannot start, with its output", async () => {
    await expect(startNode({ args: ["--no-such-flag"] })).rejects.toThrow(
      /exited \(code 2[\s\S]*no-such-flag/,
    );
  });

  it("reports a restart whose server exits before it is ready at once, with its output", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chorus-startnode-restart-"));
    try {
      node = await startNode({ dataDir: join(dir, "db"), startTimeoutMs: 20_000 });
      await node.kill();
      // The data directory is a file now: the server cannot open it, and says so.
      await rm(join(dir, "db"), { recursive: true });
      await writeFile(join(dir, "db"), "not a directory");
      const t0 = performance.now();
      await expect(node.restart()).rejects.toThrow(
        /exited \(code 1[\s\S]*cannot open the data directory/,
      );
      // It used to wait for the start timeout: the first start's readiness counted again.
      expect(performance.now() - t0).toBeLessThan(10_000);
    } finally {
      await node?.stop();
      node = undefined;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("leaves nothing of a node that cannot start: no data directory, no exit listener", async () => {
    const parent = await mkdtemp(join(tmpdir(), "chorus-startnode-"));
    const tmp = process.env["TMPDIR"];
    process.env["TMPDIR"] = parent; // where startNode makes the node's data directory
    try {
      const listeners = process.listenerCount("exit");
      for (let i = 0; i < 3; i++)
        await expect(startNode({ args: ["--no-such-flag"] })).rejects.toThrow(/no-such-flag/);
      expect(await readdir(parent)).toEqual([]);
      expect(process.listenerCount("exit")).toBe(listeners);

      // A node that started and stopped leaves nothing either.
      const started = await startNode();
      try {
        expect(started.dataDir?.startsWith(parent)).toBe(true);
      } finally {
        await started.stop();
      }
      expect(await readdir(parent)).toEqual([]);
      expect(process.listenerCount("exit")).toBe(listeners);
    } finally {
      if (tmp === undefined) delete process.env["TMPDIR"];
      else process.env["TMPDIR"] = tmp;
      await rm(parent, { recursive: true, force: true });
    }
  });
});
