// Kernel-level faults (iptables on loopback) between small TCP servers on 127.0.0.2 and
// 127.0.0.3. Needs root and a working iptables; skips with the reason elsewhere.
import { execFile } from "node:child_process";
import { once } from "node:events";
import { createSocket } from "node:dgram";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  kernelFaultsSupport,
  startCluster,
  startKernelFaults,
  waitFor,
  type KernelFaults,
  type StartKernelFaultsOptions,
  type TestCluster,
} from "./index.js";

const A = "127.0.0.2";
const B = "127.0.0.3";
/**
 * Hosts nobody else uses, for the test of rules without a port scope: other test files may run
 * clusters on 127.0.0.2 and .3 at the same time, and those rules would cut them too.
 */
const LONE_A = "127.0.100.2";
const LONE_B = "127.0.100.3";
/** How long a blocked connect or send is watched before it counts as blackholed. */
const SILENCE_MS = 700;

const support = await kernelFaultsSupport();

function iptablesS(command: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(command, ["-w", "5", "-S"], { encoding: "utf8" }, (err, out) =>
      err ? reject(new Error(`${command} -S failed`, { cause: err })) : resolve(out),
    ),
  );
}

function iptables(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(command, ["-w", "5", ...args], (err) =>
      err ? reject(new Error(`${command} ${args.join(" ")} failed`, { cause: err })) : resolve(),
    ),
  );
}

/** A TCP server that remembers what each connection sent and can write to it. */
interface Peer {
  readonly host: string;
  readonly port: number;
  readonly sockets: Socket[];
  received(): string;
  close(): Promise<void>;
}

async function startPeer(host: string): Promise<Peer> {
  const sockets: Socket[] = [];
  let received = "";
  const server: Server = createServer((s) => {
    sockets.push(s);
    s.setEncoding("utf8");
    s.on("data", (d: string) => (received += d));
    s.on("error", () => {});
  });
  server.listen({ host, port: 0 });
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return {
    host,
    port: address.port,
    sockets,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** "connected", "timeout", or the error's code (e.g. "ECONNREFUSED"). */
type ConnectOutcome = string;

/** Connects from `from` (source address) to `peer`: the outcome within `windowMs`. */
async function tryConnect(
  from: string,
  peer: Peer,
  windowMs = SILENCE_MS,
): Promise<ConnectOutcome> {
  const s = connect({ host: peer.host, port: peer.port, localAddress: from });
  try {
    return await new Promise<ConnectOutcome>((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), windowMs);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve("connected");
      });
      s.once("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(err.code ?? err.message);
      });
    });
  } finally {
    s.destroy();
  }
}

/** An open connection from `from` to `peer`, and the server's end of it. */
async function openConnection(
  from: string,
  peer: Peer,
): Promise<{ client: Socket; server: Socket; clientReceived: () => string }> {
  const before = peer.sockets.length;
  const client = connect({ host: peer.host, port: peer.port, localAddress: from });
  client.on("error", () => {});
  let got = "";
  client.setEncoding("utf8");
  client.on("data", (d: string) => (got += d));
  await once(client, "connect");
  const server = await waitFor(() => peer.sockets[before], {
    timeoutMs: 5_000,
    message: "the server accepted the connection",
  });
  return { client, server, clientReceived: () => got };
}

let faults: KernelFaults | undefined;
let cluster: TestCluster | undefined;
const peers: Peer[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
  for (const s of sockets.splice(0)) s.destroy();
  await faults?.close();
  faults = undefined;
  await Promise.all(peers.splice(0).map((p) => p.close()));
});

/**
 * Peers on A and B, and faults between A and B scoped to the peers' ports (the default), so
 * that nothing else running on these hosts meanwhile is affected.
 */
async function setup(
  options: StartKernelFaultsOptions = {},
): Promise<{ f: KernelFaults; a: Peer; b: Peer }> {
  const a = await startPeer(A);
  const b = await startPeer(B);
  peers.push(a, b);
  const f = (faults = await startKernelFaults({
    hosts: [A, B],
    ports: [a.port, b.port],
    ...options,
  }));
  return { f, a, b };
}

describe.skipIf(!support.available)(
  `kernel faults (iptables on loopback)${support.available ? "" : ` — skipped: ${support.reason}`}`,
  () => {
    it("partition() blackholes both directions, leaves other hosts alone, and heal() restores", async () => {
      const { f, a, b } = await setup();
      expect(await tryConnect(A, b)).toBe("connected");
      const open = await openConnection(A, b);
      sockets.push(open.client);

      await f.partition(A, B);
      expect(await f.rules()).toHaveLength(2);
      // New connections hang (a DROP, not a refusal) in both directions...
      const [ab, ba] = await Promise.all([tryConnect(A, b), tryConnect(B, a)]);
      expect({ ab, ba }).toEqual({ ab: "timeout", ba: "timeout" });
      // ...and an open connection carries nothing.
      open.client.write("during");
      const otherHost = await tryConnect("127.0.0.1", b);
      expect(otherHost).toBe("connected");
      expect(b.received()).toBe("");

      await f.heal();
      expect(await f.rules()).toEqual([]);
      expect(await tryConnect(A, b)).toBe("connected");
      // TCP retransmits what was sent during the partition.
      await waitFor(() => b.received() === "during", {
        timeoutMs: 10_000,
        message: "the bytes sent during the partition arrive after heal()",
      });
    });

    it("dropFrom() blocks one direction of an open connection only", async () => {
      const { f, b } = await setup();
      const open = await openConnection(A, b);
      sockets.push(open.client);
      await f.dropFrom(A, B);
      open.client.write("from-a");
      open.server.write("from-b");
      await waitFor(() => open.clientReceived() === "from-b", {
        timeoutMs: 5_000,
        message: "B -> A still delivers",
      });
      // A -> B: nothing within the window, and no new connection (its handshake needs A -> B).
      expect(await tryConnect(A, b)).toBe("timeout");
      expect(b.received()).toBe("");
      await f.heal();
      await waitFor(() => b.received() === "from-a", {
        timeoutMs: 10_000,
        message: "A -> B delivers again after heal()",
      });
    });

    it("the reject mode refuses at once instead of hanging", async () => {
      const { f, a, b } = await setup();
      await f.partition(A, B, { mode: "reject" });
      const started = performance.now();
      expect(await tryConnect(A, b, 5_000)).toBe("ECONNREFUSED");
      expect(await tryConnect(B, a, 5_000)).toBe("ECONNREFUSED");
      expect(performance.now() - started).toBeLessThan(4_000);
    });

    it("isolate() cuts a host from the other hosts, and with clients from everyone", async () => {
      const { f, a, b } = await setup();
      await f.isolate(B);
      expect(await tryConnect(A, b)).toBe("timeout");
      expect(await tryConnect(B, a)).toBe("timeout");
      expect(await tryConnect("127.0.0.1", b)).toBe("connected");
      await f.heal();
      await f.isolate(B, { clients: true });
      expect(await tryConnect("127.0.0.1", b)).toBe("timeout");
      expect(await tryConnect("127.0.0.9", b)).toBe("timeout");
      expect(await tryConnect(A, b)).toBe("timeout");
      // B to itself still works.
      expect(await tryConnect(B, b)).toBe("connected");
    });

    it("without ports, every packet between the hosts is blocked, UDP too", async () => {
      const a = await startPeer(LONE_A);
      const b = await startPeer(LONE_B);
      peers.push(a, b);
      const f = (faults = await startKernelFaults({ hosts: [LONE_A, LONE_B] }));
      const udp = createSocket("udp4");
      udp.bind(0, LONE_B);
      await once(udp, "listening");
      const received: string[] = [];
      udp.on("message", (m) => received.push(m.toString()));
      const sender = createSocket("udp4");
      sender.bind(0, LONE_A);
      await once(sender, "listening");
      try {
        const port = udp.address().port;
        await f.partition(LONE_A, LONE_B);
        expect(await tryConnect(LONE_A, b)).toBe("timeout");
        sender.send("during", port, LONE_B);
        expect(await tryConnect(LONE_B, a)).toBe("timeout");
        expect(received).toEqual([]);
        await f.heal();
        expect(await tryConnect(LONE_A, b)).toBe("connected");
        sender.send("after", port, LONE_B);
        await waitFor(() => received.includes("after"), {
          timeoutMs: 5_000,
          message: "a datagram after heal()",
        });
        // A datagram is not retransmitted: the one sent during the partition is gone.
        expect(received).toEqual(["after"]);
      } finally {
        udp.close();
        sender.close();
      }
    });

    it("with ports, only those ports are blocked", async () => {
      const b2 = await startPeer(B);
      peers.push(b2);
      const { f, b } = await setup({ ports: [b2.port] });
      await f.partition(A, B);
      expect(await tryConnect(A, b2)).toBe("timeout");
      expect(await tryConnect(A, b)).toBe("connected");
    });

    it("refuses addresses outside loopback", async () => {
      const { f } = await setup();
      await expect(f.partition(A, "10.0.0.1")).rejects.toThrow(/not a loopback IPv4 address/);
      await expect(f.dropFrom("::1", A)).rejects.toThrow(/not a loopback IPv4 address/);
      expect(await f.rules()).toEqual([]);
    });

    it("close() removes the chain and its jump; a dead process's chain is removed at start", async () => {
      if (!support.available) throw new Error(support.reason);
      const cmd = support.iptables;
      // A chain left behind by a process that is gone (as after a SIGKILL of a test run).
      const dead = execFile(process.execPath, ["-e", ""]);
      await once(dead, "exit");
      const stale = `CHORUS-TEST-${dead.pid}-abcdef`;
      await iptables(cmd, ["-N", stale]);
      await iptables(cmd, [
        "-I",
        "INPUT",
        "-i",
        "lo",
        "-s",
        "127.0.0.0/8",
        "-d",
        "127.0.0.0/8",
        "-j",
        stale,
      ]);
      await iptables(cmd, [
        "-A",
        stale,
        "-s",
        A,
        "-d",
        B,
        "-p",
        "tcp",
        "--dport",
        "9",
        "-j",
        "DROP",
      ]);

      const { f } = await setup();
      const chain = f.chain;
      let listing = await iptablesS(cmd);
      expect(listing).not.toContain(stale);
      expect(listing).toContain(`-N ${chain}`);
      expect(listing).toContain(`-j ${chain}`);
      await f.partition(A, B);
      await f.close();
      faults = undefined;
      listing = await iptablesS(cmd);
      expect(listing).not.toContain(chain);
      const ours = listing.split("\n").filter((l) => l.includes(`CHORUS-TEST-${process.pid}-`));
      expect(ours).toEqual([]);
      await expect(f.partition(A, B)).rejects.toThrow(/closed/);
    });
  },
);

describe.skipIf(!support.available)(
  `startCluster({ kernelFaults: true })${support.available ? "" : ` — skipped: ${support.reason}`}`,
  () => {
    it("runs the nodes on 127.0.0.2, .3, .4 with the same ports; an isolated leader is replaced", async () => {
      const c = (cluster = await startCluster({ size: 3, memDb: true, kernelFaults: true }));
      expect(c.hosts).toEqual(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
      expect(c.nodes.map((n) => n.extHttp.host)).toEqual([...c.hosts]);
      const ports = (i: number) => {
        const n = c.nodes[i]!;
        return [n.extTcp.port, n.extHttp.port, n.intTcp.port, n.intHttp.port];
      };
      expect(ports(1)).toEqual(ports(0));
      expect(ports(2)).toEqual(ports(0));
      const leader = await c.leader({ timeoutMs: 20_000 });
      await c.kernel.isolate(leader);
      expect(await c.kernel.faults.rules()).toHaveLength(4);
      // The others elect one of them; the test process (127.0.0.1) still reaches every node.
      await waitFor(
        async () => {
          const states = await Promise.all([0, 1, 2].map((i) => c.stateOf(i)));
          return states.some((s, i) => i !== leader && s === "Leader") &&
            states[leader] !== "Leader"
            ? states
            : undefined;
        },
        { timeoutMs: 20_000, message: "a leader among the other two, the isolated one deposed" },
      );
      await c.kernel.heal();
      await waitFor(async () => (await c.stateOf(leader)) === "Follower", {
        timeoutMs: 20_000,
        message: "the old leader follows after heal()",
      });
      const chain = c.kernel.faults.chain;
      await c.stop();
      cluster = undefined;
      expect(await iptablesS(support.available ? support.iptables : "iptables")).not.toContain(
        chain,
      );
    });
  },
);
