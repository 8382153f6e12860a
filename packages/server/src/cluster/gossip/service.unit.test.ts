import { describe, expect, it } from "vitest";
import { GossipService, type GossipLogger, type SelfMemberInfo } from "./service.js";
import type { Endpoint } from "../../node-types.js";
import { recordToWire, endpointKey } from "./wire.js";
import type { GossipTransport } from "./transport.js";
import { record } from "./test-support/fixtures.js";

class FakeClock {
  mono = 1_000;
  wall = Date.parse("2025-01-01T00:00:00.000Z");
  monotonicMs = () => this.mono;
  wallMs = () => this.wall;
  advance(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }
}

class FakeTransport implements GossipTransport {
  readonly peers = new Map<string, (body: string) => string>();
  readonly calls: string[] = [];
  closed = false;
  async post(endpoint: Endpoint, body: string): Promise<string> {
    const key = endpointKey(endpoint);
    this.calls.push(key);
    const peer = this.peers.get(key);
    if (!peer) throw new Error("ECONNREFUSED");
    return peer(body);
  }
  close(): void {
    this.closed = true;
  }
}

class ListLogger implements GossipLogger {
  readonly lines: { level: string; obj: object; msg: string }[] = [];
  debug = (obj: object, msg: string) => void this.lines.push({ level: "debug", obj, msg });
  info = (obj: object, msg: string) => void this.lines.push({ level: "info", obj, msg });
  warn = (obj: object, msg: string) => void this.lines.push({ level: "warn", obj, msg });
  error = (obj: object, msg: string) => void this.lines.push({ level: "error", obj, msg });
}

function selfInfo(state = "Follower", writer = 1): SelfMemberInfo {
  const {
    timestamp: _t,
    isAlive: _a,
    ...rest
  } = recordToWire(
    record("self", 0, {
      state: state as "Follower",
      writerCheckpoint: writer,
      internalHttp: { host: "127.0.0.1", port: 9000 },
    }),
    true,
  );
  return rest;
}

function setup(
  extra: { seeds?: string[]; clusterId?: string; seedSource?: () => Endpoint[] } = {},
) {
  const clock = new FakeClock();
  const transport = new FakeTransport();
  const logger = new ListLogger();
  let me = selfInfo();
  const service = new GossipService({
    self: () => me,
    clock,
    transport,
    logger,
    intervalMs: 500,
    ...extra,
  });
  const changes: string[][] = [];
  service.onChange((ms) =>
    changes.push(ms.map((m) => `${m.record.instanceId}:${m.record.state}:${m.isAlive}`)),
  );
  return { clock, transport, logger, service, changes, setSelf: (s: SelfMemberInfo) => (me = s) };
}

const doc = (sender: string, ...members: ReturnType<typeof record>[]) =>
  JSON.stringify({ sender, members: members.map((r) => recordToWire(r, true)) });

describe("GossipService", () => {
  it("defaults: 500 ms interval, dead after 4 rounds, removed after 60 s, 1 s request timeout", () => {
    const { service } = setup();
    expect([
      service.intervalMs,
      service.deadAfterMs,
      service.removeAfterMs,
      service.requestTimeoutMs,
    ]).toEqual([500, 2_000, 60_000, 1_000]);
  });

  it("serves its own record first, stamped with its clock", () => {
    const { service, clock } = setup();
    clock.advance(10);
    const d = service.document();
    expect(d.sender).toBe("self");
    expect(d.members).toHaveLength(1);
    expect(d.members[0]).toMatchObject({
      instanceId: "self",
      isAlive: true,
      timestamp: new Date(clock.wall).toISOString(),
    });
  });

  it("stamps strictly increasing timestamps even when the wall clock steps back", () => {
    const { service, clock } = setup();
    const t1 = Date.parse(service.document().members[0]!.timestamp);
    clock.wall -= 10_000;
    const t2 = Date.parse(service.document().members[0]!.timestamp);
    expect(t2).toBeGreaterThan(t1);
  });

  it("merges a POST and answers with its view", () => {
    const { service, changes } = setup();
    const r = service.handlePost(doc("a", record("a", 5, { state: "Leader" })));
    expect(r.status).toBe(200);
    const ids = (r.body as { members: { instanceId: string }[] }).members.map((m) => m.instanceId);
    expect(ids).toEqual(["self", "a"]);
    expect(changes).toEqual([["self:Follower:true", "a:Leader:true"]]);
    expect(service.leader()?.record.instanceId).toBe("a");
  });

  it("never lets others overwrite its own record", () => {
    const { service } = setup();
    const r = service.handlePost(
      doc("a", record("self", Date.now() + 1e9, { state: "Leader", writerCheckpoint: 999 })),
    );
    expect(r.status).toBe(200);
    const mine = service.document().members;
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ instanceId: "self", state: "Follower", writerCheckpoint: "1" });
  });

  it.each([
    ["not JSON", "{nope", 400, "BAD_REQUEST"],
    ["wrong shape", JSON.stringify({ members: "x" }), 400, "BAD_REQUEST"],
    [
      "one bad member among good ones",
      JSON.stringify({ members: [recordToWire(record("a", 5), true), { instanceId: "b" }] }),
      400,
      "BAD_REQUEST",
    ],
    ["too large", " ".repeat(1024 * 1024 + 1), 413, "PAYLOAD_TOO_LARGE"],
  ])("refuses a bad body (%s) and changes nothing", (_name, body, status, error) => {
    const { service, changes, logger } = setup();
    const before = service.document().members.map((m) => m.instanceId);
    const r = service.handlePost(body);
    expect(r.status).toBe(status);
    expect(r.body).toMatchObject({ error });
    expect(service.document().members.map((m) => m.instanceId)).toEqual(before);
    expect(changes).toEqual([]);
    expect(logger.lines.some((l) => l.level === "warn" && l.msg === "gossip POST refused")).toBe(
      true,
    );
  });

  it("refuses another cluster's document with 409 and a logged reason; accepts one without clusterId", () => {
    const { service, logger } = setup({ clusterId: "blue" });
    const other = JSON.stringify({
      clusterId: "green",
      sender: "a",
      members: [recordToWire(record("a", 5), true)],
    });
    expect(service.handlePost(other)).toMatchObject({
      status: 409,
      body: { error: "CLUSTER_MISMATCH" },
    });
    expect(service.members()).toHaveLength(1);
    expect(logger.lines.some((l) => /cluster green ignored/.test(l.msg))).toBe(true);
    expect(service.handlePost(doc("a", record("a", 5))).status).toBe(200);
    expect(service.document().clusterId).toBe("blue");
  });

  it("marks a silent member dead after deadAfterMs and removes it after removeAfterMs", () => {
    const { service, clock, changes } = setup();
    service.handlePost(doc("a", record("a", 5)));
    clock.advance(1_999);
    expect(service.members()[1]?.isAlive).toBe(true);
    clock.advance(1);
    expect(service.members()[1]?.isAlive).toBe(false);
    clock.advance(58_000);
    expect(service.members()).toHaveLength(1);
    expect(changes).toEqual([
      ["self:Follower:true", "a:Follower:true"],
      ["self:Follower:true", "a:Follower:false"],
      ["self:Follower:true"],
    ]);
  });

  it("reports its own state changes, not its checkpoint moves", () => {
    const { service, changes, setSelf } = setup();
    setSelf(selfInfo("Follower", 50));
    service.document();
    expect(changes).toEqual([]);
    setSelf(selfInfo("Leader", 50));
    service.document();
    expect(changes).toEqual([["self:Leader:true"]]);
  });

  it("gossips to seeds (not itself), merges replies, and keeps seeds after their member is removed", async () => {
    const { service, transport, clock } = setup({ seeds: ["127.0.0.1:9000", "127.0.0.1:9001"] });
    transport.peers.set("127.0.0.1:9001", () =>
      doc("b", record("b", 7, { internalHttp: { host: "127.0.0.1", port: 9001 } })),
    );
    await service.gossipOnce();
    expect(transport.calls).toEqual(["127.0.0.1:9001"]);
    expect(service.members().map((m) => m.record.instanceId)).toEqual(["self", "b"]);
    expect(service.members()[1]?.lastDirectMs).toBe(clock.mono);

    transport.peers.delete("127.0.0.1:9001");
    clock.advance(61_000);
    expect(service.members()).toHaveLength(1);
    transport.calls.length = 0;
    await service.gossipOnce();
    expect(transport.calls).toEqual(["127.0.0.1:9001"]);
  });

  it("gossips to members learned from others, not only seeds", async () => {
    const { service, transport } = setup({ seeds: ["127.0.0.1:9001"] });
    const b = record("b", 7, { internalHttp: { host: "127.0.0.1", port: 9001 } });
    const c = record("c", 7, { internalHttp: { host: "127.0.0.1", port: 9002 } });
    transport.peers.set("127.0.0.1:9001", () => doc("b", b, c));
    transport.peers.set("127.0.0.1:9002", () => doc("c", c));
    await service.gossipOnce();
    transport.calls.length = 0;
    await service.gossipOnce();
    expect(transport.calls.sort()).toEqual(["127.0.0.1:9001", "127.0.0.1:9002"]);
  });

  it("recognises a seed that is itself under another name and skips it afterwards", async () => {
    const { service, transport, logger } = setup({ seeds: ["localhost:9000"] });
    transport.peers.set("localhost:9000", () => JSON.stringify(service.document()));
    await service.gossipOnce();
    await service.gossipOnce();
    expect(transport.calls).toEqual(["localhost:9000"]);
    expect(logger.lines.filter((l) => l.msg.includes("is this node"))).toHaveLength(1);
  });

  it("logs an unreachable target once as a warning, then at debug, and its recovery", async () => {
    const { service, transport, logger } = setup({ seeds: ["127.0.0.1:9001"] });
    await service.gossipOnce();
    await service.gossipOnce();
    transport.peers.set("127.0.0.1:9001", () => doc("b", record("b", 7)));
    await service.gossipOnce();
    expect(logger.lines.map((l) => `${l.level} ${l.msg}`)).toEqual([
      "warn gossip failed",
      "debug gossip failed",
      "info gossip target reachable again",
    ]);
  });

  it("ignores a malformed reply with a logged reason", async () => {
    const { service, transport, logger } = setup({ seeds: ["127.0.0.1:9001"] });
    transport.peers.set("127.0.0.1:9001", () => '{"members": [1]}');
    await service.gossipOnce();
    expect(service.members()).toHaveLength(1);
    expect(logger.lines[0]).toMatchObject({
      level: "warn",
      obj: { reason: expect.stringMatching(/malformed reply/) },
    });
  });

  it("adds the seeds of seedSource each round", async () => {
    let round = 0;
    const { service, transport } = setup({
      seedSource: () => (round++ === 0 ? [] : [{ host: "10.0.0.9", port: 2112 }]),
    });
    await service.gossipOnce();
    expect(transport.calls).toEqual([]);
    await service.gossipOnce();
    expect(transport.calls).toEqual(["10.0.0.9:2112"]);
  });

  it("survives a failing seedSource", async () => {
    const { service, transport, logger } = setup({
      seeds: ["127.0.0.1:9001"],
      seedSource: () => {
        throw new Error("SERVFAIL");
      },
    });
    await service.gossipOnce();
    expect(transport.calls).toEqual(["127.0.0.1:9001"]);
    expect(logger.lines.some((l) => l.msg.startsWith("gossip seed lookup failed"))).toBe(true);
  });

  it("refuses a bad seed and a bad self record at construction", () => {
    const base = { logger: new ListLogger(), transport: new FakeTransport() };
    expect(() => new GossipService({ ...base, self: selfInfo, seeds: ["nohostport"] })).toThrow(
      /not host:port/,
    );
    expect(
      () => new GossipService({ ...base, self: () => ({ ...selfInfo(), state: "Boss" }) }),
    ).toThrow(/invalid MemberInfo/);
  });

  it("stop() closes the transport", async () => {
    const { service, transport } = setup();
    service.start();
    await service.stop();
    expect(transport.closed).toBe(true);
  });
});
