import { makeTestCertificates, type TestCertificates } from "@chorus/testing";
import { createLogger, createNode, type ChorusNode } from "@chorus/server";
import { randomUUID } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  Code,
  PORTS_0,
  RawClient,
  append,
  basic,
  httpUrl,
  jsonEvent,
  nativeUrl,
  readAllForwards,
} from "./helpers.js";

const PASSWORD = "correct horse battery staple";

describe("authentication", () => {
  let node: ChorusNode;
  const logLines: string[] = [];

  beforeAll(async () => {
    node = await createNode(
      { memDb: true, ...PORTS_0, adminPassword: PASSWORD },
      {
        logger: createLogger({
          level: "trace",
          stdout: { write: (line: string) => void logLines.push(line) },
        }),
      },
    );
  });
  afterAll(async () => {
    await node?.close();
  });

  it("refuses a WebSocket upgrade with wrong credentials with HTTP 401", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(nativeUrl(node), {
        headers: { Authorization: basic("admin", "wrong") },
      });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => reject(new Error("upgrade accepted")));
      ws.on("error", () => undefined);
    });
    expect(status).toBe(401);
    const other = await new Promise<number>((resolve) => {
      const ws = new WebSocket(nativeUrl(node), {
        headers: { Authorization: basic("root", PASSWORD) },
      });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => resolve(101));
      ws.on("error", () => undefined);
    });
    expect(other).toBe(401);
  });

  it("needs per-request credentials when the upgrade carried none", async () => {
    const stream = `auth-${randomUUID()}`;
    const c = await RawClient.connect(nativeUrl(node));
    expect((await c.request({ ping: {} })).pong?.instanceId).toBe(node.instanceId);
    const missing = await append(c, stream, [jsonEvent("A", {})]);
    expect(missing.error?.code).toBe(Code.NOT_AUTHENTICATED);
    expect(missing.error?.message).toMatch(/authentication required/);
    const wrong = await c.request({
      credentials: { username: "admin", password: "nope" },
      append: { streamId: stream, events: [jsonEvent("A", {})] },
    });
    expect(wrong.error?.code).toBe(Code.NOT_AUTHENTICATED);
    expect(wrong.error?.message).toMatch(/wrong username or password/);
    const read = await c.request({ readStream: { streamId: stream, maxCount: 1 } });
    expect(read.error?.code).toBe(Code.NOT_AUTHENTICATED);
    const sub = await c.request({ subscribe: { all: true, credit: 10 } });
    expect(sub.error?.code).toBe(Code.NOT_AUTHENTICATED);
    expect(node.store.stats().events).toBe(0);

    const right = await c.request({
      credentials: { username: "admin", password: PASSWORD },
      append: { streamId: stream, events: [jsonEvent("A", {})] },
    });
    expect(right.appendResult?.success).toBeTruthy();
    await c.close();

    const authed = await RawClient.connect(nativeUrl(node), {
      headers: { Authorization: basic("admin", PASSWORD) },
    });
    expect(await readAllForwards(authed, stream)).toHaveLength(1);
    // A wrong per-request password overrides good connection credentials.
    const override = await authed.request({
      credentials: { username: "admin", password: "x" },
      readStream: { streamId: stream, maxCount: 1 },
    });
    expect(override.error?.code).toBe(Code.NOT_AUTHENTICATED);
    await authed.close();
  });

  it("answers an append too large to store with authentication first, then its size", async () => {
    // Large enough (megabytes) that the node refuses it from a scan of the frame, without
    // decoding its events: the same checks come first all the same.
    const stream = `auth-big-${randomUUID()}`;
    const events = Array.from({ length: 20_000 }, (_, i) =>
      jsonEvent("Big", { i, pad: "p".repeat(40) }),
    );
    const stored = node.store.stats().events;
    const c = await RawClient.connect(nativeUrl(node));
    const missing = await append(c, stream, events, undefined, 30_000);
    expect(missing.error?.code).toBe(Code.NOT_AUTHENTICATED);
    const wrong = await c.request(
      {
        credentials: { username: "admin", password: "nope" },
        append: { streamId: stream, events },
      },
      30_000,
    );
    expect(wrong.error?.code).toBe(Code.NOT_AUTHENTICATED);
    const right = await c.request(
      {
        credentials: { username: "admin", password: PASSWORD },
        append: { streamId: stream, events },
      },
      30_000,
    );
    expect(right.error?.code).toBe(Code.INVALID_ARGUMENT);
    expect(right.error?.message).toMatch(
      /^append of 20000 events \(\d+ bytes as stored\) exceeds the largest append, 1048576 bytes/,
    );
    expect(node.store.stats().events).toBe(stored);
    await c.close();
  });

  it("protects the HTTP API except health and gossip", async () => {
    for (const path of ["/health/live", "/health/ready", "/gossip"]) {
      expect((await fetch(httpUrl(node, path))).status).toBe(200);
    }
    const stream = `hauth-${randomUUID()}`;
    const body = JSON.stringify([{ eventId: randomUUID(), eventType: "A", data: {} }]);
    for (const headers of [
      {},
      { Authorization: basic("admin", "wrong") },
      { Authorization: "Bearer abc" },
    ] as Record<string, string>[]) {
      const res = await fetch(httpUrl(node, `/streams/${stream}`), {
        method: "POST",
        body,
        headers,
      });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/Basic/);
      expect(((await res.json()) as { error: string }).error).toBe("NOT_AUTHENTICATED");
    }
    for (const path of ["/info", "/metrics", `/streams/${stream}`]) {
      expect((await fetch(httpUrl(node, path))).status).toBe(401);
    }
    const ok = await fetch(httpUrl(node, `/streams/${stream}`), {
      method: "POST",
      body,
      headers: { Authorization: basic("admin", PASSWORD) },
    });
    expect(ok.status).toBe(201);
    expect(
      (
        await fetch(httpUrl(node, "/info"), {
          headers: { Authorization: basic("admin", PASSWORD) },
        })
      ).status,
    ).toBe(200);
  });

  it("never writes credentials to a log line", () => {
    expect(logLines.some((l) => l.includes('"msg":"node ready"'))).toBe(true);
    expect(logLines.length).toBeGreaterThan(3);
    const encoded = Buffer.from(`admin:${PASSWORD}`).toString("base64");
    expect(
      logLines.filter((l) => l.includes(PASSWORD) || l.includes(encoded) || l.includes("nope")),
    ).toEqual([]);
  });
});

describe("TLS", () => {
  let certs: TestCertificates;
  let ca: Buffer;
  let node: ChorusNode;

  beforeAll(async () => {
    certs = await makeTestCertificates({ hosts: ["127.0.0.1"] });
    ca = Buffer.from(certs.ca);
    node = await createNode(
      {
        memDb: true,
        ...PORTS_0,
        certificateFile: certs.certFile,
        certificatePrivateKeyFile: certs.keyFile,
        adminPassword: PASSWORD,
      },
      { logger: createLogger({ level: "silent" }) },
    );
  });
  afterAll(async () => {
    await node?.close();
    await certs?.remove();
  });

  function httpsGet(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port, path, ca, headers }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  it("serves https on the HTTP ports and wss on the native port, verified against the CA", async () => {
    const gossip = await httpsGet(node.endpoints.extHttp.port, "/gossip");
    expect(gossip.status).toBe(200);
    expect(JSON.parse(gossip.body)).toMatchObject({ members: [{ state: "Leader" }] });
    expect((await httpsGet(node.endpoints.intHttp.port, "/gossip")).status).toBe(200);
    expect((await httpsGet(node.endpoints.extHttp.port, "/info")).status).toBe(401);

    const c = await RawClient.connect(nativeUrl(node, "wss"), {
      ca,
      headers: { Authorization: basic("admin", PASSWORD) },
    });
    const r = await append(c, "tls-stream", [jsonEvent("A", {})]);
    expect(r.appendResult?.success).toBeTruthy();
    expect((await c.request({ ping: {} })).pong?.state).toBe("Leader");
    await c.close();
  });

  it("refuses plain connections and clients that do not trust the CA", async () => {
    await expect(fetch(httpUrl(node, "/gossip"))).rejects.toThrow();
    await expect(RawClient.connect(nativeUrl(node, "wss"))).rejects.toThrow(
      /self-signed|unable to verify|certificate/i,
    );
    await expect(RawClient.connect(nativeUrl(node, "ws"))).rejects.toThrow();
  });
});

describe("startup errors", () => {
  it("refuses a non-loopback bind without security, in the embedded API too", async () => {
    await expect(createNode({ memDb: true, ...PORTS_0, extIp: "0.0.0.0" })).rejects.toThrow(
      /refusing to start/,
    );
  });

  it("reports a port in use clearly and releases what it opened", async () => {
    const first = await createNode(
      { memDb: true, ...PORTS_0 },
      { logger: createLogger({ level: "silent" }) },
    );
    try {
      await expect(
        createNode(
          { memDb: true, ...PORTS_0, extHttpPort: first.endpoints.extHttp.port },
          { logger: createLogger({ level: "silent" }) },
        ),
      ).rejects.toThrow(
        new RegExp(
          `cannot listen on extHttp 127.0.0.1:${first.endpoints.extHttp.port}: the address is in use`,
        ),
      );
      expect((await fetch(httpUrl(first, "/health/ready"))).status).toBe(200);
    } finally {
      await first.close();
    }
  });
});
