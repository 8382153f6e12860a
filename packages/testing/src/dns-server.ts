import { spawn, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { waitFor } from "./wait.js";

export interface DnsRecords {
  /** name -> IPv4/IPv6 addresses (one A/AAAA record each). */
  addresses?: Record<string, string[]>;
  /** SRV records: name (e.g. "_chorus._tcp.cluster.test") -> targets. */
  srv?: Record<string, Array<{ target: string; port: number; priority?: number; weight?: number }>>;
}

export interface StartDnsServerOptions extends DnsRecords {
  /** Loopback address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Path of the dnsmasq binary. Default: /usr/sbin/dnsmasq, else `dnsmasq` on PATH. */
  binary?: string;
  /** Deadline for the server to answer. Default 10,000 ms. */
  startTimeoutMs?: number;
}

export interface TestDnsServer {
  /** "host:port", as a client's dnsServers / dnsServer setting takes it. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** Replaces every record and reloads (dnsmasq restarts on the same port). */
  setRecords(records: DnsRecords): Promise<void>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A free UDP+TCP port on `host` (DNS listens on both). */
async function freePort(host: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, host, () => {
        const address = server.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const udp = createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, host, () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (free) return port;
  }
  throw new Error(`no free DNS port on ${host}`);
}

function dnsmasqArgs(host: string, port: number, records: DnsRecords): string[] {
  const args = [
    "--keep-in-foreground",
    "--no-daemon",
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    "--bind-interfaces",
    `--listen-address=${host}`,
    `--port=${port}`,
    "--user=root",
    "--pid-file=",
    "--log-facility=-",
    // Answer only for the names given; everything else is NXDOMAIN, never forwarded.
    "--local=/#/",
  ];
  for (const [name, ips] of Object.entries(records.addresses ?? {})) {
    for (const ip of ips) args.push(`--host-record=${name},${ip}`);
  }
  for (const [name, targets] of Object.entries(records.srv ?? {})) {
    for (const t of targets) {
      args.push(`--srv-host=${name},${t.target},${t.port},${t.priority ?? 0},${t.weight ?? 0}`);
    }
  }
  return args;
}

/**
 * Starts a real DNS server (dnsmasq, from Debian's dnsmasq-base) on a loopback port,
 * answering only for the given records. Resolves once it answers queries.
 */
export async function startDnsServer(options: StartDnsServerOptions = {}): Promise<TestDnsServer> {
  const host = options.host ?? "127.0.0.1";
  const binary =
    options.binary ?? (existsSync("/usr/sbin/dnsmasq") ? "/usr/sbin/dnsmasq" : "dnsmasq");
  const port = await freePort(host);
  let child: ChildProcess | undefined;
  let output = "";

  const launch = async (records: DnsRecords) => {
    const proc = spawn(binary, dnsmasqArgs(host, port, records), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout?.setEncoding("utf8").on("data", (s: string) => (output += s));
    proc.stderr?.setEncoding("utf8").on("data", (s: string) => (output += s));
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (err) => reject(new Error(`cannot run ${binary}: ${err.message}`)));
      proc.once("exit", (code) => reject(new Error(`dnsmasq exited with code ${code}: ${output}`)));
    });
    exited.catch(() => undefined);
    // Ready when a TCP connection to the DNS port is accepted.
    await Promise.race([
      exited,
      waitFor(
        () =>
          new Promise<boolean>((resolve) => {
            const s = createServer();
            s.once("error", () => resolve(true)); // port taken: dnsmasq is listening
            s.listen(port, host, () => s.close(() => resolve(false)));
          }),
        {
          timeoutMs: options.startTimeoutMs ?? 10_000,
          message: `dnsmasq listening on ${host}:${port}`,
        },
      ),
    ]);
  };

  const stopChild = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    await gone;
  };

  await launch(options);
  const server: TestDnsServer = {
    address: `${host}:${port}`,
    host,
    port,
    async setRecords(records) {
      await stopChild();
      await launch(records);
    },
    stop: stopChild,
    [Symbol.asyncDispose]: stopChild,
  };
  return server;
}
