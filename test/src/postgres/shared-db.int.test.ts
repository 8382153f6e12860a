// Shared-database mode: chorus-server instances on one real PostgreSQL database. Several
// instances, concurrent writers through each, a live $all subscriber, a killed instance, a
// wrong database URL.
import { spawn } from "node:child_process";
import { ChorusClient, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { getJson, serverBinPath, startNode, waitFor, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const CLIENT_OPTIONS =
  "reconnectionDelay=20&discoverDelay=20&maxDiscoverAttempts=200&maxReconnections=1000&operationTimeout=20000";

interface Member {
  instanceId: string;
  state: string;
  isAlive: boolean;
  externalTcp: { host: string; port: number };
}

const pg = sharedPostgres();

async function startInstances(url: string, n: number): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < n; i++) nodes.push(await startNode({ databaseUrl: url }));
  return nodes;
}

/** A connection string with the test's client options added. */
function withOptions(connectionString: string, more = ""): string {
  return `${connectionString}${connectionString.includes("?") ? "&" : "?"}${CLIENT_OPTIONS}${more}`;
}

function seeds(nodes: readonly TestNode[]): string {
  return `chorus+discover://${nodes.map((n) => n.httpEndpoint).join(",")}?${CLIENT_OPTIONS}`;
}

async function aliveMembers(node: TestNode): Promise<Member[]> {
  const { body } = await getJson(`http://${node.httpEndpoint}/gossip`, 5_000);
  return (body as { members: Member[] }).members.filter((m) => m.isAlive);
}

describe.skipIf(!pg.runs)("instances on a shared PostgreSQL database", () => {
  it("find each other through the database: /gossip on each lists every live instance as serving", async () => {
    const url = await pg().createDatabase();
    const nodes = await startInstances(url, 3);
    try {
      for (const node of nodes) {
        await waitFor(async () => (await aliveMembers(node)).length === 3, {
          timeoutMs: 10_000,
          message: "three live members in /gossip",
        });
        const members = await aliveMembers(node);
        expect(members.map((m) => m.state)).toEqual(["Leader", "Leader", "Leader"]);
        expect(new Set(members.map((m) => m.externalTcp.port))).toEqual(
          new Set(nodes.map((n) => n.extTcp.port)),
        );
      }
      // A stopped instance leaves the list at once (it removes its record).
      await nodes[2]?.stop();
      await waitFor(async () => (await aliveMembers(nodes[0] as TestNode)).length === 2, {
        timeoutMs: 10_000,
        message: "two live members after one stopped",
      });
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it("several instances starting at once on an empty database create its schema once", async () => {
    const url = await pg().createDatabase();
    const nodes = await Promise.all(
      Array.from({ length: 3 }, () => startNode({ databaseUrl: url })),
    );
    try {
      const db = new URL(url).pathname.slice(1);
      expect(await pg().psql("SELECT version FROM chorus.schema_version", db)).toBe("2\n");
      expect(await pg().psql("SELECT count(*) FROM chorus.head", db)).toBe("1\n");
      const client = new ChorusClient(withOptions((nodes[1] as TestNode).connectionString));
      try {
        const r = await client.appendToStream("s", jsonEvent({ type: "T", data: 1 }));
        expect(r.position).toBe(0n);
      } finally {
        await client.close();
      }
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it("concurrent writers through three instances: a live $all subscriber gets every acknowledged event once, in position order, equal to a final read", async () => {
    const url = await pg().createDatabase();
    const nodes = await startInstances(url, 3);
    const writers = nodes.map((n) => new ChorusClient(withOptions(n.connectionString)));
    const reader = new ChorusClient(withOptions((nodes[0] as TestNode).connectionString));
    try {
      const seen: ResolvedEvent[] = [];
      const sub = reader.subscribeToAll({ fromPosition: "start" });
      const caughtUp = new Promise<void>((resolve) => sub.on("caughtUp", () => resolve()));
      const consuming = (async () => {
        for await (const e of sub) {
          if (!e.event.streamId.startsWith("$")) seen.push(e);
        }
      })();
      await caughtUp;

      // 3 writers x 4 concurrent loops x 40 appends of 1-3 events, on 6 shared streams.
      const acknowledged = new Map<string, bigint>();
      await Promise.all(
        writers.flatMap((client, w) =>
          Array.from({ length: 4 }, async (_, loop) => {
            for (let i = 0; i < 40; i++) {
              const events = Array.from({ length: 1 + ((i + loop) % 3) }, (_, k) =>
                jsonEvent({ type: "Wrote", data: { w, loop, i, k } }),
              );
              const r = await client.appendToStream(`acct-${(w + i) % 6}`, events, {
                expectedVersion: "any",
              });
              for (const e of events) acknowledged.set(e.id, r.position);
            }
          }),
        ),
      );
      await waitFor(() => seen.length >= acknowledged.size, {
        timeoutMs: 20_000,
        message: `the subscriber to receive ${acknowledged.size} events (has ${seen.length})`,
      });

      const ids = seen.map((e) => e.event.id);
      expect(new Set(ids).size).toBe(ids.length); // nothing twice
      expect(new Set(ids)).toEqual(new Set(acknowledged.keys())); // everything acknowledged
      const positions = seen.map((e) => e.event.position);
      for (let i = 1; i < positions.length; i++)
        expect(positions[i] as bigint).toBeGreaterThan(positions[i - 1] as bigint);
      // Per stream: revisions without gaps.
      const byStream = new Map<string, bigint[]>();
      for (const e of seen) {
        const list = byStream.get(e.event.streamId) ?? [];
        list.push(e.event.revision);
        byStream.set(e.event.streamId, list);
      }
      for (const revisions of byStream.values())
        expect(revisions).toEqual(revisions.map((_, i) => BigInt(i)));

      const final: string[] = [];
      for await (const e of writers[1]!.readAll({ fromPosition: "start", maxCount: 100_000 })) {
        if (!e.event.streamId.startsWith("$")) final.push(e.event.id);
      }
      expect(final).toEqual(ids);
      await sub.unsubscribe();
      await consuming;
    } finally {
      await Promise.all([...writers, reader].map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it("a retried append through another instance returns the original result and is stored once", async () => {
    const url = await pg().createDatabase();
    const nodes = await startInstances(url, 2);
    const a = new ChorusClient(withOptions((nodes[0] as TestNode).connectionString));
    try {
      const events = [jsonEvent({ type: "A", data: 1 }), jsonEvent({ type: "B", data: 2 })];
      const first = await a.appendToStream("order-1", events, { expectedVersion: "no_stream" });
      await a.appendToStream("order-1", jsonEvent({ type: "C", data: 3 }), { expectedVersion: 1n });
      // The retry goes to the other instance's HTTP API, whichever instance the client chose.
      for (const expected of ["no_stream", "any", "stream_exists"]) {
        const res = await fetch(`http://${(nodes[1] as TestNode).httpEndpoint}/streams/order-1`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Chorus-Expected-Version": expected },
          body: JSON.stringify(
            events.map((e) => ({
              eventId: e.id,
              eventType: e.type,
              data: JSON.parse(Buffer.from(e.data).toString()) as unknown,
            })),
          ),
        });
        expect(res.status).toBe(201);
        expect(await res.json()).toEqual({
          nextExpectedVersion: String(first.nextExpectedVersion),
          position: String(first.position),
        });
      }
      const stored: string[] = [];
      for await (const e of a.readStream("order-1")) stored.push(e.event.type);
      expect(stored).toEqual(["A", "B", "C"]);
    } finally {
      await a.close();
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it("SIGKILL of an instance under writes: the client moves to another, nothing acknowledged is lost or doubled", async () => {
    const url = await pg().createDatabase();
    const nodes = await startInstances(url, 3);
    const client = new ChorusClient(seeds(nodes));
    let stop = false;
    let writing: Promise<void> = Promise.resolve();
    try {
      const acknowledged: string[] = [];
      writing = (async () => {
        for (let i = 0; i < 5_000 && !stop; i++) {
          const e = jsonEvent({ type: "Tick", data: { i } });
          await client.appendToStream("ticks", e, { expectedVersion: "any" });
          acknowledged.push(e.id);
        }
      })();
      await waitFor(() => acknowledged.length >= 50, { timeoutMs: 10_000 });
      // Kill the instance this client is connected to, then another one.
      for (const victim of [0, 1]) {
        const before = acknowledged.length;
        await nodes[victim]?.kill();
        await waitFor(() => acknowledged.length >= before + 50, {
          timeoutMs: 15_000,
          message: "writes to go on after an instance was killed",
        });
      }
      stop = true;
      await writing;
      const stored: string[] = [];
      for await (const e of client.readStream("ticks", { maxCount: 100_000 }))
        stored.push(e.event.id);
      expect(new Set(stored).size).toBe(stored.length);
      expect(stored.slice(0, acknowledged.length)).toEqual(acknowledged);
      expect(stored.length).toBeLessThanOrEqual(acknowledged.length + 1); // at most the one in flight
    } finally {
      stop = true;
      await writing.catch(() => undefined);
      await client.close();
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });
});

describe.skipIf(!pg.runs)("a database URL that does not work", () => {
  async function run(args: string[]): Promise<{ code: number | null; output: string }> {
    const child = spawn(process.execPath, [serverBinPath(), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith("CHORUS_")),
      ),
    });
    let output = "";
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    clearTimeout(timer);
    return { code, output };
  }
  const ports = [
    "--ext-tcp-port",
    "0",
    "--ext-http-port",
    "0",
    "--int-tcp-port",
    "0",
    "--int-http-port",
    "0",
  ];

  it("fails to start with exit code 1 and says why, never printing the password", async () => {
    const wrongPassword = pg().url.replace(`:${pg().password}@`, ":not-the-password-4711@");
    const cases: Array<[string, RegExp]> = [
      [wrongPassword, /cannot use the database postgres:\/\/chorus:\*\*\*@.*authentication failed/],
      [
        `postgres://chorus:not-the-password-4711@127.0.0.1:${pg().port}/no_such_db`,
        /authentication failed|database "no_such_db" does not exist/,
      ],
      [
        "postgres://chorus:not-the-password-4711@127.0.0.1:1/x",
        /connection refused at 127\.0\.0\.1:1/,
      ],
    ];
    for (const [url, message] of cases) {
      const { code, output } = await run(["--db", url, ...ports]);
      expect(code, output).toBe(1);
      expect(output).toMatch(message);
      expect(output).not.toContain("not-the-password-4711");
    }
  });

  it("refuses flags of a replicated cluster with exit code 2", async () => {
    const { code, output } = await run(["--db", pg().url, "--cluster-size", "3", ...ports]);
    expect(code).toBe(2);
    expect(output).toContain("--cluster-size cannot be used with a database URL in --db");
    expect(output).not.toContain(pg().password);
  });
});
