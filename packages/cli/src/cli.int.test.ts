import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChorusClient, jsonEvent } from "@chorus/client";
import { freePorts, startNode, waitFor, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChorus, type Result } from "./test-support/run.js";

const PASSWORD = "pa55-w0rd-never-shown";
/** Event data JSON.parse would change (a 64-bit id, the spelling of 1.10). */
const EXACT = '{"id":1234567890123456789,"price":1.10}';

/** Runs `chorus args` to its end; its output never holds the password. */
async function chorus(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const r = await startChorus(args, env).result;
  expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  return r;
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let secured: TestNode; // authentication on: every command carries admin credentials
let plain: TestNode;
let dir: string;
let conn: string;
let env: Record<string, string>;

beforeAll(async () => {
  [secured, plain] = await Promise.all([
    startNode({ memDb: true, adminPassword: PASSWORD }),
    startNode({ memDb: true }),
  ]);
  dir = await mkdtemp(join(tmpdir(), "chorus-cli-"));
  conn = `chorus://admin:${PASSWORD}@${secured.httpEndpoint}?tls=false`;
  env = { CHORUS_CONNECTION: conn };
});

afterAll(async () => {
  await Promise.all([secured?.stop(), plain?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("chorus", () => {
  it("appends and reads back, as text and as JSON", async () => {
    const id = "3f1c1c8e-0b5e-4d0b-9d3a-6f3c2a1b0c01";
    const first = await chorus(
      ["append", "order-1", "--type", "OrderPlaced", "--data", '{"id":1}', "--id", id, "--json"],
      env,
    );
    expect(first).toMatchObject({ code: 0, stderr: "" });
    expect(jsonLines(first.stdout)).toEqual([
      { streamId: "order-1", eventId: id, revision: "0", position: expect.any(String) },
    ]);
    // --connection wins over the environment (here a port nobody listens on)
    const [unused] = await freePorts(1);
    const second = await chorus(
      [
        "--connection",
        conn,
        "append",
        "order-1",
        "--type",
        "OrderPaid",
        "--data",
        '{"id":1,"amount":5}',
        "--metadata",
        '{"by":"cli"}',
        "--expected-version",
        "0",
        // A fixed id: a retried run of this test is an idempotent repeat, not a conflict.
        "--id",
        "3f1c1c8e-0b5e-4d0b-9d3a-6f3c2a1b0c02",
      ],
      { CHORUS_CONNECTION: `chorus://127.0.0.1:${unused}?tls=false` },
    );
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(
      /^appended 3f1c1c8e-0b5e-4d0b-9d3a-6f3c2a1b0c02 to order-1@1 \(position \d+\)\n$/,
    );

    const text = await chorus(["read", "order-1"], env);
    expect(text).toMatchObject({ code: 0, stderr: "" });
    expect(text.stdout).toBe(
      'order-1@0  OrderPlaced  {"id":1}\norder-1@1  OrderPaid  {"id":1,"amount":5}\n',
    );

    const json = await chorus(["read", "order-1", "--json", "--backwards", "--count", "1"], env);
    expect(json.code).toBe(0);
    expect(jsonLines(json.stdout)).toEqual([
      expect.objectContaining({
        streamId: "order-1",
        revision: "1",
        eventType: "OrderPaid",
        isJson: true,
        data: { id: 1, amount: 5 },
        metadata: { by: "cli" },
      }),
    ]);

    const conflict = await chorus(
      ["append", "order-1", "--type", "T", "--expected-version", "no_stream"],
      env,
    );
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/^chorus: wrong expected version on stream "order-1"[^\n]*\n$/);
  });

  it("names the node in status without its credentials", async () => {
    const r = await chorus(["status"], env);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain(
      `chorus://***@${secured.httpEndpoint}?tls=false: 1 member, leader ${secured.httpEndpoint}`,
    );
  });

  it("fails with exit code 1 and one line on a stream that does not exist", async () => {
    const r = await chorus(["read", "no-such-stream"], env);
    expect(r).toMatchObject({
      code: 1,
      stdout: "",
      stderr: 'chorus: stream "no-such-stream" not found\n',
    });
  });

  it("reads and sets a stream's metadata, which the node then applies", async () => {
    const stream = `meta-${Date.now()}`;
    for (let i = 0; i < 3; i++)
      expect(
        (await chorus(["append", stream, "--type", "T", "--data", `{"n":${i}}`], env)).code,
      ).toBe(0);
    expect(await chorus(["metadata", stream], env)).toMatchObject({
      code: 0,
      stdout: `${stream} (no metadata): {}\n`,
      stderr: "",
    });
    const set = await chorus(["metadata", stream, "--set", '{"maxCount":2,"owner":"ops"}'], env);
    expect(set).toMatchObject({ code: 0, stderr: "" });
    expect(set.stdout).toMatch(
      new RegExp(
        `^set the metadata of ${stream}: revision 0 of \\$\\$${stream} \\(position \\d+\\)\\n$`,
      ),
    );
    const json = await chorus(["metadata", stream, "--json"], env);
    expect(jsonLines(json.stdout)).toEqual([
      { streamId: stream, metadata: { maxCount: 2, owner: "ops" }, metaRevision: "0" },
    ]);
    // maxCount 2: the node keeps the two newest events.
    expect((await chorus(["read", stream], env)).stdout).toBe(
      `${stream}@1  T  {"n":1}\n${stream}@2  T  {"n":2}\n`,
    );
    // Expected version of $$stream: 0 is taken now, so "no_stream" conflicts and changes nothing.
    const conflict = await chorus(
      ["metadata", stream, "--set", "{}", "--expected-version", "no_stream"],
      env,
    );
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/^chorus: wrong expected version on stream "\$\$meta-/);
    // Refused before anything is sent: not an object, a value the rules refuse, a flag alone.
    for (const [args, message] of [
      [["--set", "[1]"], "metadata: --set takes a JSON object"],
      [["--set", '{"maxCount":0}'], "metadata.maxCount must be a positive integer, got 0"],
      [["--expected-version", "0"], "metadata: --expected-version goes with --set"],
      [["--set", "{"], "--set"],
    ] as const) {
      const r = await chorus(["metadata", stream, ...args], env);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(message);
    }
    expect((await chorus(["metadata", stream, "--json"], env)).stdout).toContain('"owner":"ops"');
  });

  it("deletes a stream softly (it can be written again) and for good (it never can)", async () => {
    const stream = `del-${Date.now()}`;
    expect((await chorus(["append", stream, "--type", "T"], env)).code).toBe(0);
    // A wrong expected version deletes nothing.
    const conflict = await chorus(["delete", stream, "--expected-version", "5"], env);
    expect(conflict).toMatchObject({
      code: 1,
      stderr: `chorus: wrong expected version on stream "${stream}": expected 5, actual 0\n`,
    });
    expect((await chorus(["read", stream], env)).code).toBe(0);

    const soft = await chorus(["delete", stream, "--expected-version", "0"], env);
    expect(soft).toMatchObject({ code: 0, stderr: "" });
    expect(soft.stdout).toMatch(
      new RegExp(`^deleted ${stream} \\(position \\d+\\): it reads as not found until`),
    );
    expect(await chorus(["read", stream], env)).toMatchObject({
      code: 1,
      stderr: `chorus: stream "${stream}" not found\n`,
    });
    // Written again, it goes on from the next revision.
    const again = await chorus(["append", stream, "--type", "T", "--json"], env);
    expect(jsonLines(again.stdout)[0]).toMatchObject({ revision: "1" });

    const hard = await chorus(["delete", stream, "--hard", "--json"], env);
    expect(hard.code).toBe(0);
    expect(jsonLines(hard.stdout)).toEqual([
      { streamId: stream, hard: true, position: expect.stringMatching(/^\d+$/) },
    ]);
    for (const args of [
      ["read", stream],
      ["append", stream, "--type", "T"],
      ["delete", stream],
    ]) {
      expect(await chorus(args, env), args.join(" ")).toMatchObject({
        code: 1,
        stderr: `chorus: stream "${stream}" is deleted\n`,
      });
    }
    expect(await chorus(["delete", "$all"], env)).toMatchObject({
      code: 2,
      stderr: "chorus: delete: $all is not a stream\n",
    });
  });

  it("refuses an unknown flag, an unknown command and a bad value with exit code 2", async () => {
    const flag = await chorus(["read", "order-1", "--no-such-flag"], env);
    expect(flag).toMatchObject({ code: 2, stdout: "" });
    expect(flag.stderr).toMatch(/unknown option '--no-such-flag'/);
    const command = await chorus(["frobnicate"], env);
    expect(command.code).toBe(2);
    expect(command.stderr).toMatch(/unknown command 'frobnicate'/);
    const value = await chorus(["read", "order-1", "--count", "-3"], env);
    expect(value.code).toBe(2);
    expect(value.stderr).toMatch(/--count/);
    const both = await chorus(["export", "--all", "--stream", "s", "--out", join(dir, "x")], env);
    expect(both).toMatchObject({
      code: 2,
      stderr: "chorus: export: give exactly one of --stream STREAM or --all\n",
    });
  });

  it("gives up on an unreachable cluster within --timeout-ms, naming it without its credentials", async () => {
    const [port] = await freePorts(1);
    const r = await chorus([
      "--connection",
      `chorus://admin:${PASSWORD}@127.0.0.1:${port}?tls=false`,
      "--timeout-ms",
      "500",
      "read",
      "order-1",
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n")).toHaveLength(2); // one line and its newline
    expect(r.stderr).toContain(`could not connect to chorus://***@127.0.0.1:${port}?tls=false`);
    expect(r.stderr).toContain("within 500 ms");
    expect(r.ms).toBeLessThan(5_000);
  });

  it("tails a stream: catch-up, a live event, then Ctrl-C ends it with exit code 0", async () => {
    expect((await chorus(["append", "tailed", "--type", "Before"], env)).code).toBe(0);
    const tail = startChorus(["tail", "tailed", "--from", "start", "--json"], env);
    try {
      await waitFor(() => tail.stdout().includes('"Before"'), {
        timeoutMs: 15_000,
        message: "the catch-up event",
      });
      expect(
        (await chorus(["append", "tailed", "--type", "Live", "--data", "[1]"], env)).code,
      ).toBe(0);
      await waitFor(() => tail.stdout().includes('"Live"'), {
        timeoutMs: 15_000,
        message: "the live event",
      });
      tail.child.kill("SIGINT");
      const r = await tail.result;
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);
      expect(jsonLines(r.stdout).map((e) => [e["revision"], e["eventType"], e["data"]])).toEqual([
        ["0", "Before", {}],
        ["1", "Live", [1]],
      ]);
    } finally {
      if (tail.child.exitCode === null) tail.child.kill("SIGKILL");
    }
  });

  it("exports to JSON lines and imports into another node: the same events, twice idempotent", async () => {
    const binary = join(dir, "blob.bin");
    await writeFile(binary, Buffer.from([0, 1, 2, 0xff, 0xfe]));
    for (const args of [
      ["append", "cart-9", "--type", "Added", "--data", '{"sku":"a","n":2}'],
      ["append", "cart-9", "--type", "Blob", "--file", binary],
      ["append", "cart-9", "--type", "Note", "--data", '"text"', "--metadata", '{"m":[1]}'],
      // JSON.parse would make the id 1234567890123456800 and the price 1.1: kept as typed.
      ["append", "exact-1", "--type", "Priced", "--data", EXACT, "--metadata", '{"n": 1e400}'],
    ])
      expect((await chorus(args, env)).code).toBe(0);

    const out = join(dir, "all.jsonl");
    const exported = await chorus(["export", "--all", "--out", out, "--json"], env);
    expect(exported).toMatchObject({ code: 0, stderr: "" }); // stderr is no TTY: no progress bar
    const lines = jsonLines(await readFile(out, "utf8"));
    expect(JSON.parse(exported.stdout)).toEqual({ exported: lines.length, from: "$all", out });
    expect(lines.map((l) => l["streamId"])).toEqual(expect.arrayContaining(["order-1", "cart-9"]));
    expect(lines.every((l) => typeof l["position"] === "string")).toBe(true);
    const blob = lines.find((l) => l["eventType"] === "Blob");
    expect(blob).toMatchObject({ isJson: false, dataBase64: "AAEC//4=" });

    const exportedText = await readFile(out, "utf8");
    expect(exportedText).toContain(`"data":${EXACT},"metadata":{"n": 1e400}}`);

    const target = ["--connection", plain.connectionString];
    const once = await chorus([...target, "import", out]);
    expect(once).toMatchObject({ code: 0, stderr: "" });
    const twice = await chorus([...target, "import", out, "--json"]);
    expect(twice.code).toBe(0);
    expect(JSON.parse(twice.stdout)).toMatchObject({ imported: lines.length });

    const essentials = (r: Result) =>
      jsonLines(r.stdout).map(
        ({ eventId, eventType, streamId, revision, isJson, data, dataBase64, metadata }) => ({
          eventId,
          eventType,
          streamId,
          revision,
          isJson,
          data,
          dataBase64,
          metadata,
        }),
      );
    for (const stream of ["order-1", "cart-9", "tailed"]) {
      const source = await chorus(["read", stream, "--json"], env);
      const copy = await chorus([...target, "read", stream, "--json"]);
      expect(copy.code).toBe(0);
      expect(essentials(copy)).toEqual(essentials(source));
      expect(essentials(copy).length).toBe(lines.filter((l) => l["streamId"] === stream).length);
    }

    // Stored exactly on both nodes (the HTTP API answers the stored text as it is).
    for (const n of [secured, plain]) {
      const answer = await fetch(`http://${n.httpEndpoint}/streams/exact-1`, {
        headers: { Authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}` },
      });
      expect(await answer.text()).toContain(`"data":${EXACT},"metadata":{"n": 1e400},`);
    }

    // one stream's export, to stdout
    const single = await chorus(["export", "--stream", "cart-9", "--out", "-"], env);
    expect(single.code).toBe(0);
    expect(jsonLines(single.stdout).map((l) => l["eventType"])).toEqual(["Added", "Blob", "Note"]);
  });

  it("exports stream metadata with the streams and imports it: retention and keys hold on the copy", async () => {
    const source = new ChorusClient(conn);
    const copy = new ChorusClient(plain.connectionString);
    try {
      // Metadata with a key JSON.parse would change, and a truncateBefore, which names the
      // source's revisions: the copy numbers its events from 0 and must not hide them.
      const meta = '{"maxCount":3,"owner":1234567890123456789,"truncateBefore":2}';
      const set = await chorus(["append", "$$kept-1", "--type", "$metadata", "--data", meta], env);
      expect(set.code).toBe(0);
      for (let i = 0; i < 6; i++)
        await source.appendToStream("kept-1", jsonEvent({ type: "T", data: { i } }));
      // Soft-deleted, then written again: its metadata holds the delete's truncateBefore.
      await source.appendToStream("again-1", [
        jsonEvent({ type: "Old", data: {} }),
        jsonEvent({ type: "Old", data: {} }),
      ]);
      await source.deleteStream("again-1");
      await source.appendToStream("again-1", jsonEvent({ type: "New", data: {} }));

      const out = join(dir, "with-metadata.jsonl");
      expect((await chorus(["export", "--all", "--out", out], env)).code).toBe(0);
      const lines = jsonLines(await readFile(out, "utf8"));
      const metadataLines = lines.filter((l) => l["streamId"] === "$$kept-1");
      expect(metadataLines).toHaveLength(1);
      expect(await readFile(out, "utf8")).toContain(
        '"data":{"maxCount":3,"owner":1234567890123456789}',
      );
      expect(
        lines.some(
          (l) =>
            String(l["streamId"]).startsWith("$$") && JSON.stringify(l).includes("truncateBefore"),
        ),
      ).toBe(false);

      const imported = await chorus([
        "--connection",
        plain.connectionString,
        "import",
        out,
        "--json",
      ]);
      expect(imported.code).toBe(0);
      expect(JSON.parse(imported.stdout)).toMatchObject({ metadata: expect.any(Number) as number });

      const types = async (client: ChorusClient, stream: string) => {
        const seen: unknown[] = [];
        for await (const e of client.readStream(stream))
          seen.push([e.event.id, e.event.type, e.event.data]);
        return seen;
      };
      expect(await types(copy, "kept-1")).toEqual(await types(source, "kept-1"));
      expect((await types(copy, "kept-1")).length).toBe(3);
      expect(await types(copy, "again-1")).toEqual(await types(source, "again-1"));
      const copied = await copy.getStreamMetadata("kept-1");
      expect(copied.metadata).toMatchObject({ maxCount: 3 });
      expect(copied.metadata).not.toHaveProperty("truncateBefore");
      // The owner key exactly as written (the HTTP API answers the stored text).
      const stored = await fetch(`http://${plain.httpEndpoint}/streams/%24%24kept-1`);
      expect(await stored.text()).toContain('"data":{"maxCount":3,"owner":1234567890123456789}');
      // The retention rule works on the copy: one more event, still the newest three.
      await copy.appendToStream("kept-1", jsonEvent({ type: "T", data: { i: 6 } }));
      expect(
        (await types(copy, "kept-1")).map((t) => (t as [string, string, { i: number }])[2].i),
      ).toEqual([4, 5, 6]);

      // One stream's export starts with its metadata.
      const single = await chorus(["export", "--stream", "kept-1", "--out", "-"], env);
      expect(single.code).toBe(0);
      const singleLines = jsonLines(single.stdout);
      expect(singleLines[0]).toMatchObject({ streamId: "$$kept-1", eventType: "$metadata" });
      expect(singleLines[0]!["data"]).not.toHaveProperty("truncateBefore");
      expect(singleLines.slice(1).map((l) => l["streamId"])).toEqual([
        "kept-1",
        "kept-1",
        "kept-1",
      ]);
    } finally {
      await Promise.all([source.close(), copy.close()]);
    }
  });

  it("manages persistent subscription groups: create, list, info, update, replay-parked, delete", async () => {
    const stream = "ps-orders";
    const create = await chorus(
      [
        "subscriptions",
        "create",
        stream,
        "billing",
        "--strategy",
        "DispatchToSingle",
        "--max-retry-count",
        "0",
      ],
      env,
    );
    expect(create).toMatchObject({ code: 0, stderr: "" });
    const again = await chorus(["subscriptions", "create", stream, "billing"], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^chorus: [^\n]*billing[^\n]*exists\n$/);

    const list = await chorus(["subscriptions", "list", stream, "--json"], env);
    expect(list.code).toBe(0);
    expect(jsonLines(list.stdout)).toEqual([
      expect.objectContaining({
        streamId: stream,
        group: "billing",
        settings: expect.objectContaining({
          consumerStrategy: "DispatchToSingle",
          maxRetryCount: 0,
        }),
      }),
    ]);
    const listText = await chorus(["subscriptions", "list"], env);
    expect(listText.stdout).toMatch(new RegExp(`^${stream}\\s+billing\\s`, "m"));

    // update changes what it names and keeps the rest; with nothing to change it is refused
    const update = await chorus(
      ["subscriptions", "update", stream, "billing", "--message-timeout-ms", "7000"],
      env,
    );
    expect(update).toMatchObject({ code: 0, stderr: "" });
    expect(update.stdout).toMatch(/^updated group billing on ps-orders \(messageTimeoutMs\)/);
    const updated = await chorus(["subscriptions", "info", stream, "billing", "--json"], env);
    expect(JSON.parse(updated.stdout)).toMatchObject({
      settings: { messageTimeoutMs: 7000, consumerStrategy: "DispatchToSingle", maxRetryCount: 0 },
    });
    expect(await chorus(["subscriptions", "update", stream, "billing"], env)).toMatchObject({
      code: 2,
      stderr: "chorus: subscriptions update: name at least one setting to change\n",
    });
    const missing = await chorus(
      ["subscriptions", "update", stream, "no-such-group", "--max-retry-count", "3"],
      env,
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^chorus: [^\n]*no-such-group[^\n]*\n$/);

    // park one event with a consumer of our own, then replay it
    const client = new ChorusClient(conn);
    try {
      await client.appendToStream(stream, jsonEvent({ type: "Bill", data: { n: 1 } }));
      const sub = client.persistentSubscriptions.subscribe(stream, "billing");
      const it = sub[Symbol.asyncIterator]();
      const firstDelivery = await it.next();
      if (firstDelivery.done) throw new Error("the subscription ended before its first event");
      await sub.nack("park", "testing replay", firstDelivery.value);
      await waitFor(
        async () =>
          (await client.persistentSubscriptions.getInfo(stream, "billing")).parkedCount === 1,
        { timeoutMs: 15_000, message: "the event parked" },
      );
      const info = await chorus(["subscriptions", "info", stream, "billing", "--json"], env);
      expect(info.code).toBe(0);
      expect(JSON.parse(info.stdout)).toMatchObject({ group: "billing", parkedCount: 1 });
      const infoText = await chorus(["subscriptions", "info", stream, "billing"], env);
      expect(infoText.stdout).toMatch(/^parked:\s+1$/m);

      const replay = await chorus(
        ["subscriptions", "replay-parked", stream, "billing", "--stop-at", "10"],
        env,
      );
      expect(replay).toMatchObject({ code: 0, stderr: "" });
      const redelivered = await it.next();
      if (redelivered.done) throw new Error("the subscription ended before the replayed event");
      expect(redelivered.value.event.id).toBe(firstDelivery.value.event.id);
      await sub.ack(redelivered.value);
      await sub.unsubscribe();
    } finally {
      await client.close();
    }

    const del = await chorus(["subscriptions", "delete", stream, "billing"], env);
    expect(del).toMatchObject({ code: 0, stderr: "" });
    const gone = await chorus(["subscriptions", "info", stream, "billing"], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr.split("\n")).toHaveLength(2);
    expect((await chorus(["subscriptions", "list", stream, "--json"], env)).stdout).toBe("");
  });
});
