// A client reaching a node of its own process (withInProcessNode): what differs from a
// socket. The semantics themselves run in the client suites parameterised over the
// "in-process" backends (single-node, persistent).
import {
  ChorusClient,
  ConnectionError,
  ConnectionSettings,
  InvalidArgumentError,
  type ConnectionSettingsBuilder,
  NotAuthenticatedError,
  TimeoutError,
  WrongPartitionError,
  binaryEvent,
  jsonEvent,
  READ_CHANNEL_PREFIX,
  type ReadMessage,
  type ResolvedEvent,
} from "@chorus/client";
import { partitionOf } from "@chorus/protocol";
import { createNode, type ChorusNode } from "@chorus/server";
import { spawn } from "node:child_process";
import diagnostics from "node:diagnostics_channel";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const CLIENT_DIST = fileURLToPath(
  new URL("../../../packages/client/dist/index.js", import.meta.url),
);
const SERVER_DIST = fileURLToPath(
  new URL("../../../packages/server/dist/index.js", import.meta.url),
);

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

async function embeddedNode(options: Parameters<typeof createNode>[0] = {}): Promise<ChorusNode> {
  const node = await createNode({ memDb: true, listen: false, logLevel: "silent", ...options });
  opened.push(node);
  return node;
}

function clientOf(
  node: ChorusNode,
  configure = (b: ConnectionSettingsBuilder): ConnectionSettingsBuilder => b,
): ChorusClient {
  const client = new ChorusClient(
    configure(ConnectionSettings.create().withInProcessNode(node)).build(),
  );
  opened.push(client);
  return client;
}

/** Listening servers of this process (TCP and pipe servers), as Node counts them. */
function listeningServers(): number {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r === "TCPServerWrap" || r === "PipeServerWrap").length;
}

describe("an in-process node", () => {
  it("with listen: false opens no port and has no endpoints, and clients still work", async () => {
    const before = listeningServers();
    const node = await embeddedNode();
    expect(listeningServers()).toBe(before);
    expect(() => node.endpoints).toThrow(/listen: false/);
    const client = clientOf(node);
    const result = await client.appendToStream("order-1", jsonEvent({ type: "Placed", data: 1 }));
    expect(result.nextExpectedVersion).toBe(0n);
    const members = await client.clusterMembers();
    expect(members.map((m) => [m.instanceId, m.state])).toEqual([[node.instanceId, "Leader"]]);
    expect(listeningServers()).toBe(before);
  });

  it("is shared by several clients: one appends, another sees it live", async () => {
    const node = await embeddedNode();
    const writer = clientOf(node);
    const reader = clientOf(node);
    const sub = reader.subscribeToStream("shared", { fromRevision: "start" });
    const caughtUp = new Promise<void>((resolve) => sub.once("caughtUp", () => resolve()));
    await caughtUp;
    await writer.appendToStream("shared", [
      jsonEvent({ type: "A", data: { n: 1 } }),
      jsonEvent({ type: "B", data: { n: 2 } }),
    ]);
    const seen: ResolvedEvent[] = [];
    for await (const e of sub) {
      seen.push(e);
      if (seen.length === 2) break;
    }
    expect(seen.map((e) => [e.event.type, e.event.data])).toEqual([
      ["A", { n: 1 }],
      ["B", { n: 2 }],
    ]);
  });

  it("leaves the process its turns while a loop of awaited appends runs: timers fire, a live subscriber keeps up", async () => {
    const node = await embeddedNode();
    const writer = clientOf(node);
    const reader = clientOf(node);
    const sub = reader.subscribeToStream("busy", { fromRevision: "start" });
    await new Promise<void>((resolve) => sub.once("caughtUp", () => resolve()));
    let received = 0;
    let receivedBeforeLastWrite = -1;
    const reading = (async () => {
      for await (const _ of sub) if (++received === 20_000) break;
    })();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let ticksDuringWrites: number;
    try {
      // An in-memory node answers without any I/O: this loop never waits for the event loop.
      for (let i = 0; i < 20_000; i++) {
        if (i === 19_999) receivedBeforeLastWrite = received;
        await writer.appendToStream("busy", jsonEvent({ type: "T", data: { i } }));
      }
      ticksDuringWrites = ticks;
    } finally {
      clearInterval(timer);
    }
    await reading;
    expect(ticksDuringWrites).toBeGreaterThan(0);
    // Delivered along the way, not all after the writer's loop.
    expect(receivedBeforeLastWrite).toBeGreaterThan(10_000);
  });

  it("leaves the process its turns while a filtered subscription catches up over events that match nothing", async () => {
    const node = await embeddedNode();
    const client = clientOf(node);
    for (let b = 0; b < 100; b++)
      await client.appendToStream(
        `quiet-${b % 10}`,
        Array.from({ length: 1000 }, (_, i) => jsonEvent({ type: "Q", data: { i } })),
      );
    // The node reads its log from memory and the filter matches nothing: no event is sent, so
    // no credit is spent, and nothing in the catch-up waits for I/O. The node's scans still
    // give the event loop a turn every few milliseconds.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let ticksDuringCatchUp: number;
    try {
      const sub = client.subscribeToAll({
        fromPosition: "start",
        filter: { streamNamePrefix: ["loud-"] },
      });
      const caughtUp = new Promise<void>((resolve) => sub.once("caughtUp", () => resolve()));
      const reading = (async () => {
        for await (const e of sub) throw new Error(`matched ${e.event.streamId}`);
      })();
      await caughtUp;
      ticksDuringCatchUp = ticks;
      await sub.unsubscribe();
      await reading;
    } finally {
      clearInterval(timer);
    }
    expect(ticksDuringCatchUp).toBeGreaterThanOrEqual(5);
  });

  it("hands the application its own copies: changing a read event's bytes changes nothing stored", async () => {
    const node = await embeddedNode();
    const client = clientOf(node);
    const data = new Uint8Array([1, 2, 3]);
    await client.appendToStream("bytes", binaryEvent({ type: "Raw", data }));
    data[1] = 77; // the application reuses its buffer after the append

    const first: ResolvedEvent[] = [];
    for await (const e of client.readStream("bytes")) first.push(e);
    (first[0]!.event.data as Uint8Array)[0] = 99;
    const again: ResolvedEvent[] = [];
    for await (const e of client.readStream("bytes")) again.push(e);
    expect([...(again[0]!.event.data as Uint8Array)]).toEqual([1, 2, 3]);
  });

  it("reads in pages of 512 events unless asked otherwise (2048 over a socket)", async () => {
    const node = await embeddedNode();
    const client = clientOf(node);
    const total = 2 * 512 + 10;
    const events = Array.from({ length: total }, (_, i) => jsonEvent({ type: "T", data: { i } }));
    await client.appendToStream("paged", events);
    const asked: number[] = [];
    const onRead = (message: unknown) => asked.push((message as ReadMessage).maxCount);
    const channel = `${READ_CHANNEL_PREFIX}:start`;
    diagnostics.subscribe(channel, onRead);
    try {
      const read: ResolvedEvent[] = [];
      for await (const e of client.readStream("paged")) read.push(e);
      expect(read.map((e) => (e.event.data as { i: number }).i)).toEqual(events.map((_, i) => i));
      expect(asked).toEqual([512, 512, 512]);
      asked.length = 0;
      let count = 0;
      for await (const _ of client.readAll({ pageSize: 2048 })) count++;
      expect(count).toBeGreaterThanOrEqual(total);
      expect(asked[0]).toBe(2048);
    } finally {
      diagnostics.unsubscribe(channel, onRead);
    }
  });

  it("checks credentials as a WebSocket upgrade does", async () => {
    const node = await embeddedNode({ adminPassword: "changeit" });
    const anonymous = clientOf(node);
    await expect(
      anonymous.appendToStream("secured", jsonEvent({ type: "A", data: 1 })),
    ).rejects.toBeInstanceOf(NotAuthenticatedError);
    const wrong = clientOf(node, (b) =>
      b.withDefaultCredentials({ username: "admin", password: "wrong" }),
    );
    await expect(
      wrong.appendToStream("secured", jsonEvent({ type: "A", data: 1 })),
    ).rejects.toBeInstanceOf(NotAuthenticatedError);
    const admin = clientOf(node, (b) =>
      b.withDefaultCredentials({ username: "admin", password: "changeit" }),
    );
    const ok = await admin.appendToStream("secured", jsonEvent({ type: "A", data: 1 }));
    expect(ok.nextExpectedVersion).toBe(0n);
  });

  it("a closed node fails operations at their deadline and drops subscriptions, never hangs", async () => {
    const node = await embeddedNode();
    const client = clientOf(node, (b) => b.withReconnectionDelay(10).limitReconnectionsTo(2));
    await client.appendToStream("before", jsonEvent({ type: "A", data: 1 }));
    const sub = client.subscribeToStream("before", { fromRevision: "start" });
    const caughtUp = new Promise<void>((resolve) => sub.once("caughtUp", () => resolve()));
    const iteration = (async () => {
      for await (const e of sub) expect(e.event.streamId).toBe("before");
    })().then(
      () => new Error("the subscription ended without an error"),
      (e: unknown) => e as Error,
    );
    await caughtUp;
    await node.close();
    const started = performance.now();
    const err = await client
      .appendToStream("after", jsonEvent({ type: "A", data: 1 }), { timeoutMs: 1_000 })
      .catch((e: unknown) => e);
    // Either the reconnections (limited to 2) ran out first, naming the node, or the deadline came.
    if (err instanceof TimeoutError) {
      expect(performance.now() - started).toBeGreaterThanOrEqual(995);
    } else {
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).toMatch(/in-process node .* shutting down|gave up/);
    }
    expect(performance.now() - started).toBeLessThan(5_000);
    const reason = await iteration;
    expect(reason.message).toMatch(/in-process node .*(shutting down|closed)|gave up/);
  });

  it("refuses a stream another replication group owns, as over a socket", async () => {
    const groups = ["east", "west"];
    const node = await embeddedNode({ partition: "east", partitions: groups });
    const client = clientOf(node);
    const streams = Array.from({ length: 20 }, (_, i) => `account-${i}`);
    const foreign = streams.find((s) => partitionOf(s, groups) === "west")!;
    const own = streams.find((s) => partitionOf(s, groups) === "east")!;
    const err = await client
      .appendToStream(foreign, jsonEvent({ type: "A", data: 1 }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongPartitionError);
    expect((err as WrongPartitionError).owner).toBe("west");
    const ok = await client.appendToStream(own, jsonEvent({ type: "A", data: 1 }));
    expect(ok.nextExpectedVersion).toBe(0n);
  });

  it("refuses what is not a node", () => {
    expect(() => ConnectionSettings.create().withInProcessNode({} as never)).toThrow(
      InvalidArgumentError,
    );
    expect(() =>
      ConnectionSettings.create()
        .withSingleNode("127.0.0.1:2113")
        .withInProcessNode({} as never),
    ).toThrow(InvalidArgumentError);
  });

  it("refuses listen: false for a cluster member", async () => {
    await expect(
      createNode({
        memDb: true,
        listen: false,
        clusterSize: 3,
        gossipSeed: ["127.0.0.1:2113"],
        logLevel: "silent",
      }),
    ).rejects.toThrow(/listen: false cannot be used with clusterSize 3/);
  });

  it("leaves nothing behind: a script with a node and a client exits by itself once both are closed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chorus-in-process-"));
    try {
      const file = join(dir, "embedded.mjs");
      await writeFile(
        file,
        `import { createNode } from ${JSON.stringify(pathToFileURL(SERVER_DIST).href)};
import { ChorusClient, ConnectionSettings, jsonEvent } from ${JSON.stringify(pathToFileURL(CLIENT_DIST).href)};
const node = await createNode({ db: ${JSON.stringify(join(dir, "data"))}, listen: false, logLevel: "silent" });
const client = new ChorusClient(ConnectionSettings.create().withInProcessNode(node).build());
await client.appendToStream("s", jsonEvent({ type: "A", data: 1 }));
const sub = client.subscribeToAll({ fromPosition: "start" });
for await (const e of sub) { if (e.event.streamId === "s") break; }
const ps = client.persistentSubscriptions;
await ps.create("s", "g");
const consumer = ps.subscribe("s", "g");
for await (const e of consumer) { await consumer.ack(e); break; }
await client.close();
await node.close();
process.stdout.write("closed\\n");
`,
      );
      const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          reject(new Error(`the script did not exit within 20 s; stdout: ${out} stderr: ${err}`));
        }, 20_000);
        child.on("exit", (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(err).toBe("");
      expect(out).toBe("closed\n");
      expect(code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps every acknowledged append when its application is killed mid-write: the next node on the directory has each once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chorus-in-process-crash-"));
    const data = join(dir, "data");
    let child: ReturnType<typeof spawn> | undefined;
    try {
      const file = join(dir, "writer.mjs");
      // Appends until killed, printing each acknowledged append's stream, revision and id.
      await writeFile(
        file,
        `import { createNode } from ${JSON.stringify(pathToFileURL(SERVER_DIST).href)};
import { ChorusClient, ConnectionSettings, jsonEvent } from ${JSON.stringify(pathToFileURL(CLIENT_DIST).href)};
const node = await createNode({ db: ${JSON.stringify(data)}, listen: false, logLevel: "silent" });
const client = new ChorusClient(ConnectionSettings.create().withInProcessNode(node).build());
const writer = async (w) => {
  for (let n = 0; n < 100000; n++) {
    const e = jsonEvent({ type: "Crash", data: { w, n } });
    const r = await client.appendToStream(\`crash-\${w}\`, e);
    process.stdout.write(\`\${w} \${r.nextExpectedVersion} \${e.id}\\n\`);
  }
};
await Promise.all([0, 1, 2, 3].map(writer));
`,
      );
      const acked = new Map<string, { stream: string; revision: bigint }>();
      let err = "";
      let partial = "";
      const c = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
      child = c;
      c.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const exited = new Promise<void>((resolve) => c.on("exit", () => resolve()));
      // Killed once 400 appends were acknowledged (or failed after 30 s).
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`fewer than 400 appends within 30 s; stderr: ${err}`)),
          30_000,
        );
        c.stdout.on("data", (d: Buffer) => {
          const lines = (partial + d.toString()).split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) {
            const [w, revision, id] = line.split(" ");
            acked.set(id!, { stream: `crash-${w}`, revision: BigInt(revision!) });
          }
          if (acked.size >= 400) {
            clearTimeout(timer);
            resolve();
          }
        });
        c.on("exit", () => {
          clearTimeout(timer);
          reject(new Error(`the writer exited on its own; stderr: ${err}`));
        });
      });
      c.kill("SIGKILL");
      await exited;
      expect(err).toBe("");

      // The application starts again on its directory: every acknowledged event is there once,
      // at the revision it was told, and each stream's revisions run 0, 1, 2, ...
      const node = await embeddedNode({ db: data, memDb: false });
      const client = clientOf(node);
      const seen = new Map<string, { stream: string; revision: bigint }>();
      const next = new Map<string, bigint>();
      for await (const { event } of client.readAll({ fromPosition: "start" })) {
        if (!event.streamId.startsWith("crash-")) continue;
        expect(seen.has(event.id), `event ${event.id} read twice`).toBe(false);
        seen.set(event.id, { stream: event.streamId, revision: event.revision });
        expect(event.revision).toBe(next.get(event.streamId) ?? 0n);
        next.set(event.streamId, event.revision + 1n);
      }
      const missing = [...acked].filter(([id]) => !seen.has(id));
      expect(missing, "acknowledged appends missing after the crash").toEqual([]);
      for (const [id, at] of acked) expect(seen.get(id)).toEqual(at);
      // Writable again where it stopped.
      const last = next.get("crash-0") ?? 0n;
      const r = await client.appendToStream("crash-0", jsonEvent({ type: "After", data: 1 }), {
        expectedVersion: last - 1n,
      });
      expect(r.nextExpectedVersion).toBe(last);
    } finally {
      child?.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });
});
