// The HTTP API's admin endpoints (the JSON the admin UI reads) and the UI's static files,
// against a real node with authentication on: answers, bad input refused with a clear 4xx and
// nothing changed, authentication rules, content types, cache headers, no path traversal.
import {
  ChorusClient,
  ConnectionSettings,
  jsonEvent,
  type PersistentSubscription,
} from "@chorus/client";
import { waitFor, type TestNode } from "@chorus/testing";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS, closeBackends, startBackendNode, type Backend } from "../backends.js";
import { nextEvent } from "../iterate.js";

const PASSWORD = "admin endpoints password";
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/** One HTTP request with the path sent exactly as given (no normalisation), with a deadline. */
function http(
  node: TestNode,
  method: string,
  path: string,
  options: { auth?: boolean; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const [host, port] = node.httpEndpoint.split(":") as [string, string];
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        method,
        path,
        timeout: 10_000,
        headers: {
          ...(options.auth !== false && { Authorization: AUTH }),
          ...(options.body !== undefined && { "Content-Type": "application/json" }),
          ...options.headers,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("error", reject);
        res.on("end", () => {
          let json: unknown;
          try {
            json = text === "" ? undefined : JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in time`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

afterAll(closeBackends);

describe.each(BACKENDS)("admin HTTP endpoints and UI files (%s)", (backend: Backend) => {
  let node: TestNode;
  let client: ChorusClient;
  let sub: PersistentSubscription;

  beforeAll(async () => {
    node = await startBackendNode(backend, { adminPassword: PASSWORD });
    client = new ChorusClient(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withDefaultCredentials({ username: "admin", password: PASSWORD })
        .withOperationTimeout(10_000)
        .build(),
    );
    for (const s of ["shop-1", "shop-2", "shop-3", "other-1"]) {
      await client.appendToStream(s, [jsonEvent({ type: "Made", data: { s } })]);
    }
    // A group with one parked event.
    await client.persistentSubscriptions.create("shop-1", "g", { startFrom: "start" });
    sub = client.persistentSubscriptions.subscribe("shop-1", "g", { bufferSize: 10 });
    const e = await nextEvent(sub[Symbol.asyncIterator]());
    await sub.nack("park", "test", e);
    await waitFor(
      async () => (await client.persistentSubscriptions.getInfo("shop-1", "g")).parkedCount === 1,
      { message: "the event is parked" },
    );
  });

  afterAll(async () => {
    await sub?.unsubscribe();
    await client?.close();
    await node?.stop();
  });

  it("lists streams by prefix, a page at a time", async () => {
    const first = await http(node, "GET", "/streams?prefix=shop-&limit=2");
    expect(first.status).toBe(200);
    const body = first.json as { streams: { streamId: string }[]; next: string | null };
    expect(body.streams.map((s) => s.streamId)).toEqual(["shop-1", "shop-2"]);
    expect(body.next).toBe("shop-2");
    const second = await http(node, "GET", "/streams?prefix=shop-&limit=2&after=shop-2");
    expect(second.json).toMatchObject({
      streams: [{ streamId: "shop-3" }],
      next: null,
      complete: true,
    });
    // System streams ($...) only when asked for.
    const all = (await http(node, "GET", "/streams")).json as { streams: { streamId: string }[] };
    expect(all.streams.every((s) => !s.streamId.startsWith("$"))).toBe(true);
    const system = (await http(node, "GET", "/streams?prefix=%24")).json as {
      streams: { streamId: string }[];
    };
    expect(system.streams.length).toBeGreaterThan(0);
    expect(system.streams.every((s) => s.streamId.startsWith("$"))).toBe(true);
  });

  it("reads $all forwards and backwards with positions as strings", async () => {
    const back = await http(node, "GET", "/streams/%24all?from=end&direction=backwards&count=2");
    expect(back.status).toBe(200);
    const page = back.json as { events: { position: string }[]; nextPosition: string };
    expect(page.events).toHaveLength(2);
    expect(typeof page.nextPosition).toBe("string");
    const fwd = await http(node, "GET", `/streams/%24all?from=${page.events[1]!.position}&count=1`);
    expect((fwd.json as { events: { position: string }[] }).events[0]!.position).toBe(
      page.events[1]!.position,
    );
  });

  it("shows groups with consumers, in flight and parked counts, and stats", async () => {
    const list = await http(node, "GET", "/subscriptions");
    expect(list.status).toBe(200);
    expect(list.json).toMatchObject({
      subscriptions: [{ streamId: "shop-1", group: "g", parkedCount: 1 }],
    });
    const info = await http(node, "GET", "/subscriptions/shop-1/g");
    expect(info.json).toMatchObject({
      streamId: "shop-1",
      group: "g",
      parkedCount: 1,
      inFlight: 0,
    });
    expect((info.json as { consumers: unknown[] }).consumers).toHaveLength(1);
    const stats = await http(node, "GET", "/stats");
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({
      state: "Leader",
      store: { commitPosition: expect.any(String) as string },
      totals: { eventsWritten: expect.any(Number) as number },
      appendLatency: { count: expect.any(Number) as number },
    });
  });

  it("refuses bad input with a clear 4xx and changes nothing", async () => {
    const before = (await http(node, "GET", "/stats")).json as {
      store: { commitPosition: string; events: number };
    };
    type Case = [method: string, path: string, status: number, says: string, body?: string];
    const cases: Case[] = [
      ["GET", "/streams?limit=0", 400, "limit must be an integer between 1 and 1000"],
      ["GET", "/streams?limit=abc", 400, "limit must be"],
      ["GET", "/streams?limit=1001", 400, "limit must be"],
      ["GET", "/streams?sort=name", 400, 'unknown query parameter "sort"'],
      ["GET", "/streams?prefix=a&prefix=b", 400, "given twice"],
      ["GET", "/streams?prefix=%01", 400, "control characters"],
      ["GET", "/streams?system=maybe", 400, "system must be true or false"],
      ["POST", "/streams", 405, "POST is not allowed on /streams", "[]"],
      ["GET", "/streams/%24all?direction=sideways", 400, "direction must be forwards or backwards"],
      ["GET", "/streams/%24all?from=-1", 400, "from must be start, end or a position"],
      ["GET", "/streams/%24all?from=abc", 400, "from must be"],
      ["GET", "/streams/%24all?count=0", 400, "count must be an integer between 1 and 4096"],
      ["GET", "/streams/%24all?count=4097", 400, "count must be"],
      ["GET", "/streams/%24all?from=999999999", 400, "beyond the end of the log"],
      // On the log a position is a byte offset: 1 is inside the first event.
      ...(backend === "postgres"
        ? []
        : [["GET", "/streams/%24all?from=1", 400, "not the start of a record"] satisfies Case]),
      ["GET", "/streams/%24all?from=start&direction=backwards", 400, "cannot start at start"],
      ["DELETE", "/streams/%24all", 400, "$all is not a stream"],
      ["GET", "/subscriptions?stream=", 400, "invalid stream name"],
      ["GET", "/subscriptions?group=g", 400, 'unknown query parameter "group"'],
      ["GET", "/subscriptions/shop-1/nope", 404, 'group "nope" on "shop-1" does not exist'],
      ["GET", "/subscriptions/shop-1", 404, "no such endpoint"],
      ["GET", "/subscriptions/a/b/c/d", 404, "no such endpoint"],
      ["GET", "/subscriptions/%E0%A4%A/g", 400, "not valid percent-encoding"],
      ["GET", `/subscriptions/shop-1/${"x".repeat(300)}`, 400, "at most 256 characters"],
      ["GET", "/subscriptions/shop-1/g/replay-parked", 405, "GET is not allowed"],
      ["POST", "/subscriptions/shop-1/g", 405, "POST is not allowed"],
      ["POST", "/subscriptions/shop-1/g/replay-parked?stopAt=-1", 400, "stopAt must be"],
      ["POST", "/subscriptions/shop-1/g/replay-parked?stopAt=x", 400, "stopAt must be"],
      ["POST", "/subscriptions/shop-1/g/replay-parked?all=1", 400, "unknown query parameter"],
      ["POST", "/subscriptions/shop-1/g/replay-parked", 400, "takes no body", '{"stopAt":1}'],
      ["POST", "/subscriptions/shop-1/nope/replay-parked", 404, "does not exist"],
      ["GET", "/stats?verbose=1", 400, "takes none"],
      ["POST", "/stats", 405, "POST is not allowed on /stats"],
    ];
    for (const [method, path, status, says, body] of cases) {
      const a = await http(node, method, path, body === undefined ? {} : { body });
      expect({ method, path, status: a.status }).toEqual({ method, path, status });
      const json = a.json as { error?: unknown; message?: unknown };
      expect(typeof json.error, `${method} ${path}`).toBe("string");
      expect(String(json.message), `${method} ${path}`).toContain(says);
      expect(a.headers["content-type"]).toContain("application/json");
    }
    // Nothing written, nothing replayed.
    const after = (await http(node, "GET", "/stats")).json as typeof before;
    expect(after.store).toMatchObject(before.store);
    const info = await client.persistentSubscriptions.getInfo("shop-1", "g");
    expect(info.parkedCount).toBe(1);
    expect(info.inFlight).toBe(0);
  });

  it("requires credentials on the data endpoints, with no challenge for the page's requests", async () => {
    for (const path of ["/streams", "/streams/%24all", "/subscriptions", "/stats"]) {
      const plain = await http(node, "GET", path, { auth: false });
      expect({ path, status: plain.status }).toEqual({ path, status: 401 });
      expect(plain.headers["www-authenticate"]).toBe('Basic realm="chorus"');
      const page = await http(node, "GET", path, {
        auth: false,
        headers: { "X-Requested-With": "chorus-ui" },
      });
      expect(page.status).toBe(401);
      expect(page.headers["www-authenticate"]).toBeUndefined();
      expect(page.text).not.toContain("shop-");
    }
    const wrong = await http(node, "GET", "/streams", {
      auth: false,
      headers: { Authorization: `Basic ${Buffer.from("admin:nope").toString("base64")}` },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.text).not.toContain("shop-");
  });

  it("serves the UI's files without credentials, with content types and cache headers", async () => {
    const index = await http(node, "GET", "/ui/", { auth: false });
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(index.headers["cache-control"]).toBe("no-cache");
    expect(index.headers["x-content-type-options"]).toBe("nosniff");
    expect(index.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(index.text).not.toContain("shop-");
    const js = /src="\.\/(app-[A-Z0-9]+\.js)"/.exec(index.text)?.[1];
    const css = /href="\.\/(app-[A-Z0-9]+\.css)"/.exec(index.text)?.[1];
    expect(js).toBeDefined();
    expect(css).toBeDefined();
    const script = await http(node, "GET", `/ui/${js}`, { auth: false });
    expect(script.status).toBe(200);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    // Bundled: no module is fetched from anywhere else.
    expect(script.text).not.toMatch(/from\s*["']https?:/);
    const style = await http(node, "GET", `/ui/${css}`, { auth: false });
    expect(style.headers["content-type"]).toBe("text/css; charset=utf-8");
    const head = await http(node, "HEAD", "/ui/", { auth: false });
    expect(head.status).toBe(200);
    expect(head.text).toBe("");
    expect((await http(node, "GET", "/ui/auth.json", { auth: false })).json).toEqual({
      authenticationRequired: true,
    });
    const redirect = await http(node, "GET", "/ui", { auth: false });
    expect(redirect.status).toBe(308);
    expect(redirect.headers["location"]).toBe("/ui/");
    expect((await http(node, "POST", "/ui/", { auth: false })).status).toBe(405);
    expect((await http(node, "GET", "/ui/nope.js", { auth: false })).status).toBe(404);
    for (const path of [
      "/ui/../package.json",
      "/ui/%2e%2e/package.json",
      "/ui/..%2fpackage.json",
      "/ui/%2e%2e%2f%2e%2e%2fserver%2fpackage.json",
      "/ui//etc/passwd",
      "/ui/%2fetc%2fpasswd",
    ]) {
      const a = await http(node, "GET", path);
      expect({ path, refused: a.status === 404 }).toEqual({ path, refused: true });
      expect(a.text).not.toContain("@chorus");
      expect(a.text).not.toContain("root:");
    }
  });
});
