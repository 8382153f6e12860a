// What keeps a user's process alive: scripts run as real `node` processes against the built
// client (packages/client/dist). Pending work (an operation, a subscription being iterated)
// must hold the process until it settles, so an awaited operation always ends with its
// result or its error, never with Node's exit code 13 for an unsettled top-level await; an
// idle client, even one nobody closed, must not stop the process from exiting.
import { freePorts, startNode, type TestNode } from "@chorus/testing";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CLIENT_DIST = fileURLToPath(
  new URL("../../../packages/client/dist/index.js", import.meta.url),
);

/** How long a script may take beyond what it is expected to take, on a loaded machine. */
const EXIT_DEADLINE_MS = 15_000;

interface ScriptRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The JSON lines the script printed, parsed. */
  lines: Array<Record<string, unknown>>;
  stderr: string;
  /** From spawn to exit, as the test saw it. */
  elapsedMs: number;
}

let dir: string;
let node: TestNode;

beforeAll(async () => {
  if (!existsSync(CLIENT_DIST))
    throw new Error(
      `${CLIENT_DIST} is missing: build the client first (npx tsc -b packages/client)`,
    );
  dir = await mkdtemp(join(tmpdir(), "chorus-process-lifetime-"));
  node = await startNode({ memDb: true });
});

afterAll(async () => {
  await node?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let scripts = 0;

/**
 * Writes `body` (an ES module; `CLIENT` is the client's module) into the temp dir and runs
 * it with node. Resolves once the process exits; kills it and rejects if it has not exited
 * within `deadlineMs`.
 */
async function runScript(body: string, deadlineMs: number): Promise<ScriptRun> {
  const file = join(dir, `script-${++scripts}.mjs`);
  await writeFile(
    file,
    `import * as CLIENT from ${JSON.stringify(pathToFileURL(CLIENT_DIST).href)};\n` +
      `const print = (fields) => console.log(JSON.stringify(fields));\n${body}\n`,
  );
  const started = performance.now();
  const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise<ScriptRun>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `the script did not exit within ${deadlineMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, deadlineMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // "close": the process has exited and its output has been read to the end.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        lines: stdout
          .split("\n")
          .filter((line) => line.trim() !== "")
          .map((line) => JSON.parse(line) as Record<string, unknown>),
        stderr,
        elapsedMs: performance.now() - started,
      });
    });
  });
}

describe("a process awaiting the client", () => {
  it("gets the TimeoutError of an append to an unreachable cluster after the operation timeout, not exit code 13", async () => {
    const operationTimeoutMs = 3_000;
    const [port] = await freePorts(1); // nothing listens there
    const run = await runScript(
      `const client = new CLIENT.ChorusClient(
  "chorus://127.0.0.1:${port}?tls=false&operationTimeout=${operationTimeoutMs}",
);
const started = performance.now();
try {
  const result = await client.appendToStream("unreachable", CLIENT.jsonEvent({ type: "A", data: 1 }));
  print({ outcome: "appended", position: String(result.position) });
  process.exitCode = 0;
} catch (err) {
  print({ outcome: "failed", name: err.name, message: err.message, elapsedMs: performance.now() - started });
  process.exitCode = 1;
}`,
      operationTimeoutMs + EXIT_DEADLINE_MS,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(1); // the script's own choice, not 13
    expect(run.lines).toEqual([
      {
        outcome: "failed",
        name: "TimeoutError",
        // Saying why: nothing listens there.
        message: expect.stringMatching(
          new RegExp(
            `^appendToStream timed out after ${operationTimeoutMs} ms: no connection yet: no node found in \\d+ of 10 discovery attempt\\(s\\) so far: 127\\.0\\.0\\.1:${port}: connection refused \\(ECONNREFUSED\\)$`,
          ),
        ) as string,
        elapsedMs: expect.any(Number) as number,
      },
    ]);
    // the deadline, not before (timers may round down by a millisecond)
    expect(run.lines[0]!.elapsedMs).toBeGreaterThanOrEqual(operationTimeoutMs - 5);
    expect(run.elapsedMs).toBeGreaterThanOrEqual(operationTimeoutMs - 5);
  });

  it("exits by itself when a client is made and never used nor closed", async () => {
    const run = await runScript(
      `new CLIENT.ChorusClient("chorus://127.0.0.1:2113?tls=false");
print({ outcome: "created" });`,
      EXIT_DEADLINE_MS,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([{ outcome: "created" }]);
  });

  it("exits by itself once an append has succeeded, though the connected client is never closed", async () => {
    const run = await runScript(
      `const client = new CLIENT.ChorusClient(${JSON.stringify(node.connectionString)});
const result = await client.appendToStream("not-closed", CLIENT.jsonEvent({ type: "A", data: 1 }));
print({ outcome: "appended", revision: String(result.nextExpectedVersion), status: client.status });`,
      EXIT_DEADLINE_MS,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([{ outcome: "appended", revision: "0", status: "connected" }]);
  });

  it("exits by itself once its own work is done, though a cluster client's connection watches its node", async () => {
    // A cluster connection asks its node whether it still serves every 2 s, with a ping on
    // the connection (connection.ts, #watchNode): that request and the connection must not
    // hold the process once the script's work (3 s here, past one ping) is done.
    const pings = async () => {
      const res = await fetch(`http://${node.httpEndpoint}/metrics`, {
        signal: AbortSignal.timeout(5_000),
      });
      const line = /^chorus_pings_total (\d+)$/m.exec(await res.text());
      if (!line) throw new Error("no chorus_pings_total in /metrics");
      return Number(line[1]);
    };
    const before = await pings();
    const run = await runScript(
      `const client = new CLIENT.ChorusClient("chorus+discover://${node.httpEndpoint}?tls=false");
await client.appendToStream("watched", CLIENT.jsonEvent({ type: "A", data: 1 }));
const started = performance.now();
setTimeout(() => print({ outcome: "done", workMs: Math.round(performance.now() - started) }), 3_000);`,
      EXIT_DEADLINE_MS,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([{ outcome: "done", workMs: expect.any(Number) as number }]);
    // At least one of the watch's pings went out while the script worked.
    expect((await pings()) - before).toBeGreaterThanOrEqual(1);
  });

  it("is held by a subscription being iterated until it ends, then exits without close()", async () => {
    // Once the subscription is live, the only thing left to keep the process alive is the
    // subscription itself: the append that ends it comes from an unref'd timer.
    const run = await runScript(
      `const client = new CLIENT.ChorusClient(${JSON.stringify(node.connectionString)});
const writer = new CLIENT.ChorusClient(${JSON.stringify(node.connectionString)});
const sub = client.subscribeToStream("held-by-subscription", { fromRevision: "end" });
sub.once("caughtUp", () => {
  print({ outcome: "live" });
  setTimeout(() => {
    void writer.appendToStream("held-by-subscription", CLIENT.jsonEvent({ type: "Late", data: 1 }));
  }, 300).unref();
});
for await (const { event } of sub) {
  print({ outcome: "received", type: event.type });
  break;
}
print({ outcome: "ended", isEnded: sub.isEnded });`,
      EXIT_DEADLINE_MS,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([
      { outcome: "live" },
      { outcome: "received", type: "Late" },
      { outcome: "ended", isEnded: true },
    ]);
  });
});
