import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { dnsSeedSource } from "./dns-seeds.js";
import type { GossipLogger } from "./service.js";

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** name -> { A: [...], AAAA: [...] }; unknown names get NXDOMAIN. */
type Zone = Record<string, { A?: string[]; AAAA?: string[] }>;

/** The question's name and type, and where the question section ends. */
function readQuestion(msg: Buffer): { name: string; type: number; end: number } {
  const labels: string[] = [];
  let off = 12;
  for (let len = msg[off] ?? 0; len !== 0; len = msg[off] ?? 0) {
    labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii"));
    off += 1 + len;
  }
  off += 1;
  return { name: labels.join(".").toLowerCase(), type: msg.readUInt16BE(off), end: off + 4 };
}

function ipv6Bytes(ip: string): Buffer {
  const [head = "", tail = ""] = ip.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  const groups = ip.includes("::")
    ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t]
    : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function answer(query: Buffer, zone: Zone): Buffer {
  const q = readQuestion(query);
  const entry = zone[q.name];
  const addresses =
    entry === undefined
      ? []
      : ((q.type === TYPE_A ? entry.A : q.type === TYPE_AAAA ? entry.AAAA : []) ?? []);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // id
  header.writeUInt16BE(0x8180 | (entry === undefined ? 3 : 0), 2); // response, RD, RA, rcode
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((ip) => {
    const rdata =
      q.type === TYPE_A ? Buffer.from(ip.split(".").map((n) => Number(n))) : ipv6Bytes(ip);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question's
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(30, 6); // TTL
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return Buffer.concat([header, query.subarray(12, q.end), ...records]);
}

const sockets: Socket[] = [];

async function fakeDns(zone: Zone): Promise<string> {
  const socket = createSocket("udp4");
  sockets.push(socket);
  socket.on("message", (msg, rinfo) => socket.send(answer(msg, zone), rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return `127.0.0.1:${socket.address().port}`;
}

/** A UDP port nobody answers on. */
async function deadServer(): Promise<string> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

function recordingLogger(): GossipLogger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: object, msg: string) => lines.push({ level, msg });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

afterEach(async () => {
  await Promise.all(
    sockets.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

describe("dnsSeedSource", () => {
  it("maps every A and AAAA record to a seed on the gossip port", async () => {
    const server = await fakeDns({
      "cluster.test": { A: ["10.0.0.2", "10.0.0.1"], AAAA: ["fd00::1"] },
    });
    const logger = recordingLogger();
    const source = dnsSeedSource({
      name: "cluster.test",
      gossipPort: 2112,
      dnsServer: server,
      logger,
    });
    const seeds = await source();
    expect(seeds).toEqual([
      { host: "10.0.0.1", port: 2112 },
      { host: "10.0.0.2", port: 2112 },
      { host: "fd00::1", port: 2112 },
    ]);
    await source();
    // The answer is logged once, not every round.
    expect(logger.lines.filter((l) => l.msg === "DNS discovery: gossip seeds")).toHaveLength(1);
  });

  it("accepts a name with A records only", async () => {
    const server = await fakeDns({ "cluster.test": { A: ["127.0.0.1"] } });
    const source = dnsSeedSource({
      name: "cluster.test",
      gossipPort: 2112,
      dnsServer: server,
      logger: recordingLogger(),
    });
    expect(await source()).toEqual([{ host: "127.0.0.1", port: 2112 }]);
  });

  it("fails a round with a clear message when the name does not exist", async () => {
    const server = await fakeDns({});
    const source = dnsSeedSource({
      name: "missing.test",
      gossipPort: 2112,
      dnsServer: server,
      logger: recordingLogger(),
    });
    await expect(source()).rejects.toThrow(/missing\.test has no A or AAAA records/);
  });

  it("fails a round with a clear message when the DNS server does not answer", async () => {
    const server = await deadServer();
    const source = dnsSeedSource({
      name: "cluster.test",
      gossipPort: 2112,
      dnsServer: server,
      queryTimeoutMs: 200,
      logger: recordingLogger(),
    });
    await expect(source()).rejects.toThrow(
      /DNS lookup of cluster\.test via 127\.0\.0\.1:\d+ failed/,
    );
  });

  it("refuses a --dns-server that is not ip:port", () => {
    expect(() =>
      dnsSeedSource({
        name: "cluster.test",
        gossipPort: 2112,
        dnsServer: "ns.example:53",
        logger: recordingLogger(),
      }),
    ).toThrow(/--dns-server must be ip:port/);
  });
});
