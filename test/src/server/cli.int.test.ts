import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { encodeFrame, decodeFrame } from "@chorus/protocol";
import { jsonEvent } from "./helpers.js";

const BIN = fileURLToPath(
  new URL("../../../packages/server/bin/chorus-server.js", import.meta.url),
);
const PORTS = [
  "--ext-tcp-port",
  "0",
  "--ext-http-port",
  "0",
  "--int-tcp-port",
  "0",
  "--int-http-port",
  "0",
];
// The environment without any CHORUS_* variable of the developer's shell.
const CLEAN_ENV = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("CHORUS_")),
);

interface Ready {
  msg: string;
  extTcp: { host: string; port: number };
  extHttp: { host: string; port: number };
  intTcp: { host: string; port: number };
  intHttp: { host: string; port: number };
  instanceId: string;
  db: string | null;
}

interface Proc {
  child: ChildProcess;
  stdout: string[];
  stderr: () => string;
  exit: Promise<number | null>;
}

const running: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const c of running) if (c.exitCode === null) c.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...CLEAN_ENV, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  const stdout: string[] = [];
  let buffered = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    stdout.push(...lines);
  });
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stdout, stderr: () => stderr, exit };
}

async function ready(p: Proc, timeoutMs = 15_000): Promise<Ready> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of p.stdout) {
      if (!line.startsWith("{")) continue;
      const parsed = JSON.parse(line) as Ready;
      if (parsed.msg === "node ready") return parsed;
    }
    if (p.child.exitCode !== null)
      throw new Error(`exited with ${p.child.exitCode}: ${p.stderr()}`);
    if (Date.now() > deadline)
      throw new Error(`no "node ready" line within ${timeoutMs} ms: ${p.stdout.join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("chorus-server binary", () => {
  it("starts, logs one parseable node ready line, serves, and stops gracefully on SIGTERM", async () => {
    const p = start(["--mem-db", ...PORTS]);
    const r = await ready(p);
    expect(r.instanceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.db).toBeNull();
    for (const ep of [r.extTcp, r.extHttp, r.intTcp, r.intHttp]) {
      expect(ep.host).toBe("127.0.0.1");
      expect(ep.port).toBeGreaterThan(0);
    }
    expect(p.stdout.filter((l) => l.includes('"node ready"'))).toHaveLength(1);
    const res = await fetch(`http://${r.extHttp.host}:${r.extHttp.port}/health/ready`);
    expect(res.status).toBe(200);

    // The native port answers an append over a raw WebSocket.
    const ws = new WebSocket(`ws://${r.extTcp.host}:${r.extTcp.port}/`);
    const reply = await new Promise<ReturnType<typeof decodeFrame>>((resolve, reject) => {
      ws.on("open", () =>
        ws.send(
          encodeFrame({
            correlationId: 1,
            append: { streamId: "bin-s", events: [jsonEvent("A", {})] },
          }),
        ),
      );
      ws.on("message", (d: Buffer) => resolve(decodeFrame(new Uint8Array(d))));
      ws.on("error", reject);
    });
    expect(reply.appendResult?.success).toBeTruthy();
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));

    p.child.kill("SIGTERM");
    expect(await p.exit).toBe(0);
    expect(await closed).toBe(1001);
    expect(p.stdout.some((l) => l.includes('"node stopped"'))).toBe(true);
  });

  it("takes settings from CHORUS_* variables and a config file, and keeps data on disk", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-cli-"));
    dirs.push(dir);
    const config = join(dir, "node.yaml");
    writeFileSync(
      config,
      `db: ${join(dir, "data")}\next-http-port: 0\nint-http-port: 0\nnode-priority: 3\n`,
    );
    const p = start(["--config", config, "--int-tcp-port=0"], {
      CHORUS_EXT_TCP_PORT: "0",
      CHORUS_NODE_PRIORITY: "7",
    });
    const r = await ready(p);
    expect(r.db).toBe(join(dir, "data"));
    const gossip = (await (
      await fetch(`http://${r.extHttp.host}:${r.extHttp.port}/gossip`)
    ).json()) as { members: { nodePriority: number }[] };
    // The environment beats the config file.
    expect(gossip.members[0]?.nodePriority).toBe(7);
    const body = JSON.stringify([
      { eventId: "6f1c1b1e-8f3a-4c57-9a59-0e1f2a3b4c5d", eventType: "Kept", data: { a: 1 } },
    ]);
    const posted = await fetch(`http://${r.extHttp.host}:${r.extHttp.port}/streams/disk-s`, {
      method: "POST",
      body,
    });
    expect(posted.status).toBe(201);
    p.child.kill("SIGINT");
    expect(await p.exit).toBe(0);

    // Restarted on the same directory, the event is still there.
    const logDir = join(dir, "logs");
    const q = start(["--config", config, "--int-tcp-port=0", "--ext-tcp-port=0", "--log", logDir]);
    const r2 = await ready(q);
    const read = (await (
      await fetch(`http://${r2.extHttp.host}:${r2.extHttp.port}/streams/disk-s`)
    ).json()) as { events: { eventType: string; data: unknown }[] };
    expect(read.events.map((e) => [e.eventType, e.data])).toEqual([["Kept", { a: 1 }]]);
    q.child.kill("SIGTERM");
    expect(await q.exit).toBe(0);
    const logFile = readFileSync(join(logDir, "chorus-server.log"), "utf8");
    expect(logFile).toContain('"msg":"node ready"');
    expect(logFile).toContain('"msg":"node stopped"');
  }, 60_000);

  it.each<[string, string[], Record<string, string>, number, RegExp]>([
    [
      "a non-loopback bind without certificates",
      ["--mem-db", ...PORTS, "--ext-ip", "0.0.0.0"],
      {},
      2,
      /refusing to start.*0\.0\.0\.0.*--insecure/,
    ],
    ["an unknown flag", ["--mem-db", "--bogus-flag", "1"], {}, 2, /unknown flag --bogus-flag/],
    ["--run-projections", ["--run-projections=all"], {}, 2, /--run-projections is not supported/],
    [
      "a cluster without seeds or --cluster-dns",
      ["--cluster-size", "3"],
      {},
      2,
      /needs --cluster-dns/,
    ],
    [
      "a bad port from the environment",
      ["--mem-db"],
      { CHORUS_EXT_HTTP_PORT: "99999" },
      2,
      /--ext-http-port \(from CHORUS_EXT_HTTP_PORT\)/,
    ],
    [
      "an unusable data directory",
      [...PORTS, "--db", "/dev/null/chorus"],
      {},
      1,
      /cannot open the data directory \/dev\/null\/chorus/,
    ],
  ])("exits with a one-line error on %s", async (_name, args, env, code, message) => {
    const p = start(args, env);
    expect(await p.exit).toBe(code);
    const err = p.stderr().trim();
    expect(err.split("\n")).toHaveLength(1);
    expect(err).toMatch(message);
  });

  it("exits 1 when a port is in use", async () => {
    const first = start(["--mem-db", ...PORTS]);
    const r = await ready(first);
    const second = start([
      "--mem-db",
      ...PORTS.slice(0, 2),
      "--ext-http-port",
      String(r.extHttp.port),
      ...PORTS.slice(4),
    ]);
    expect(await second.exit).toBe(1);
    expect(second.stderr()).toMatch(
      new RegExp(`cannot listen on extHttp 127.0.0.1:${r.extHttp.port}: the address is in use`),
    );
    first.child.kill("SIGTERM");
    expect(await first.exit).toBe(0);
  });

  it("prints --help and --version", async () => {
    const help = start(["--help"]);
    expect(await help.exit).toBe(0);
    expect(help.stdout.join("\n")).toMatch(/--ext-tcp-port/);
    const version = start(["--version"]);
    expect(await version.exit).toBe(0);
    expect(version.stdout.join("\n")).toMatch(/^chorus-server \d+\.\d+\.\d+/);
  });
});
