/**
 * Kernel-level network faults between loopback hosts (127.0.0.2, .3, ...), with iptables: the
 * packets themselves are dropped (or rejected), as between machines whose network fails, and
 * the processes on either side see nothing but silence (or resets).
 *
 * Every rule lives in a chain of its own, `CHORUS-TEST-<pid>-<random>`, that the INPUT chain
 * jumps to only for packets on `lo` from 127.0.0.0/8 to 127.0.0.0/8; its rules match a source
 * and a destination loopback address (and, with `ports`, a port on either side), so nothing
 * outside loopback is ever touched. The chain is removed by `close()`, by a synchronous
 * `exit` handler of this process, and, when this process died without either, by the stale
 * chain cleanup the next `startKernelFaults()` runs (a chain whose pid is no longer alive).
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { isIPv4 } from "node:net";

/** Prefix of every chain this module creates. */
export const KERNEL_FAULTS_CHAIN_PREFIX = "CHORUS-TEST-";

/** The iptables commands tried, in order: the system's default, then the legacy backend. */
export const IPTABLES_COMMANDS: readonly string[] = ["iptables", "iptables-legacy"];

/** Deadline of one iptables call (it waits up to this long for the xtables lock too). */
export const DEFAULT_IPTABLES_TIMEOUT_MS = 10_000;

/** Whether this machine can run kernel faults, and with which iptables command. */
export type KernelFaultsSupport =
  | { readonly available: true; readonly iptables: string }
  | { readonly available: false; readonly reason: string };

/** How blocked packets are treated. */
export type BlockMode =
  /** Silently discarded: connects and sends time out, as over a dead network (default). */
  | "drop"
  /**
   * Fails at once: TCP is answered with a reset (a reset itself passes), UDP with ICMP port
   * unreachable; other protocols (ICMP) pass.
   */
  | "reject";

export interface BlockOptions {
  /** Default "drop". */
  mode?: BlockMode;
}

export interface IsolateOptions extends BlockOptions {
  /**
   * Also cut the host off from every other loopback address (clients included, e.g. the test
   * process, whose connections leave from 127.0.0.1), not only from the other `hosts`.
   * Default false.
   */
  clients?: boolean;
}

export interface StartKernelFaultsOptions {
  /**
   * The hosts of the nodes (loopback IPv4 addresses): what `isolate()` cuts a host off from.
   * Default: none (then `isolate()` needs `{ clients: true }`).
   */
  hosts?: readonly string[];
  /**
   * Only packets from or to one of these ports (on either side) are affected: TCP only, and
   * another cluster on the same hosts with other ports is left alone. At most 15. Default:
   * every packet between the hosts, any protocol.
   */
  ports?: readonly number[];
  /** The iptables command. Default: the first of `IPTABLES_COMMANDS` that works here. */
  iptables?: string;
  /** Deadline of one iptables call. Default `DEFAULT_IPTABLES_TIMEOUT_MS`. */
  commandTimeoutMs?: number;
}

export interface KernelFaults {
  /** The chain holding the rules. */
  readonly chain: string;
  /** The iptables command in use. */
  readonly iptables: string;
  /** Blocks every packet between `a` and `b`, both ways (a partition). */
  partition(a: string, b: string, options?: BlockOptions): Promise<void>;
  /**
   * Blocks every packet between `host` and every other of `hosts`, both ways; with
   * `{ clients: true }` between `host` and every other loopback address.
   */
  isolate(host: string, options?: IsolateOptions): Promise<void>;
  /**
   * One-way: packets from `from` to `to` are blocked, packets from `to` to `from` pass. Over
   * TCP that stalls new connections either way (the handshake needs both directions), while
   * an open connection still carries data from `to` to `from`.
   */
  dropFrom(from: string, to: string, options?: BlockOptions): Promise<void>;
  /** Removes every rule (the chain stays, empty, until close()). */
  heal(): Promise<void>;
  /** The rules of the chain, as `iptables -S CHAIN` prints them (`-A ...` lines). */
  rules(): Promise<string[]>;
  /** Removes the jump and the chain. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const LOOPBACK_NET = "127.0.0.0/8";
/** The jump from INPUT to our chain: loopback to loopback only. */
const jumpSpec = (chain: string): string[] => [
  "-i",
  "lo",
  "-s",
  LOOPBACK_NET,
  "-d",
  LOOPBACK_NET,
  "-j",
  chain,
];

function runIptables(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      ["-w", String(Math.max(1, Math.ceil(timeoutMs / 1_000))), ...args],
      { timeout: timeoutMs, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) {
          const detail = stderr.trim() || err.message;
          reject(new Error(`${command} ${args.join(" ")} failed: ${detail}`, { cause: err }));
        } else resolve(stdout);
      },
    );
  });
}

function runIptablesSync(command: string, args: string[], timeoutMs: number): boolean {
  try {
    execFileSync(command, ["-w", String(Math.max(1, Math.ceil(timeoutMs / 1_000))), ...args], {
      timeout: timeoutMs,
      stdio: "ignore",
    });
    return true;
  } catch {
    return false;
  }
}

function checkLoopback(host: string, what: string): string {
  if (!isIPv4(host) || !host.startsWith("127.")) {
    throw new RangeError(`${what}: ${JSON.stringify(host)} is not a loopback IPv4 address`);
  }
  return host;
}

/**
 * Whether kernel faults work here: root (or CAP_NET_ADMIN) and an iptables that can create a
 * chain and a rule. Tries each of `IPTABLES_COMMANDS` with a throwaway chain; the reason
 * says what is missing otherwise.
 */
export async function kernelFaultsSupport(
  options: { commandTimeoutMs?: number } = {},
): Promise<KernelFaultsSupport> {
  const timeoutMs = options.commandTimeoutMs ?? DEFAULT_IPTABLES_TIMEOUT_MS;
  if (process.platform !== "linux") {
    return { available: false, reason: `kernel faults need Linux (this is ${process.platform})` };
  }
  const errors: string[] = [];
  for (const command of IPTABLES_COMMANDS) {
    const probe = `${KERNEL_FAULTS_CHAIN_PREFIX}PROBE-${process.pid}`;
    try {
      await runIptables(command, ["-t", "filter", "-N", probe], timeoutMs);
      try {
        await runIptables(
          command,
          ["-A", probe, "-s", "127.0.0.254", "-d", "127.0.0.254", "-j", "DROP"],
          timeoutMs,
        );
      } finally {
        await runIptables(command, ["-F", probe], timeoutMs).catch(() => "");
        await runIptables(command, ["-X", probe], timeoutMs).catch(() => "");
      }
      return { available: true, iptables: command };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      errors.push(/ENOENT/.test(message) ? `${command} is not installed` : message.split("\n")[0]!);
    }
  }
  const uid = process.getuid?.();
  const who = uid === 0 ? "running as root" : `not root (uid ${uid})`;
  return {
    available: false,
    reason: `kernel faults need root and a working iptables (${who}; ${errors.join("; ")})`,
  };
}

/** The pid a chain name of ours carries, or undefined. */
function pidOfChain(chain: string): number | undefined {
  const m = /^CHORUS-TEST-(?:PROBE-)?(\d+)(?:-[0-9a-f]+)?$/.exec(chain);
  return m ? Number(m[1]) : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the chains of ours (`CHORUS-TEST-<pid>-...`) whose process is gone, and their jumps
 * from INPUT and OUTPUT. Returns the names removed.
 */
export async function removeStaleKernelFaultChains(
  iptables: string,
  timeoutMs = DEFAULT_IPTABLES_TIMEOUT_MS,
): Promise<string[]> {
  const listing = await runIptables(iptables, ["-t", "filter", "-S"], timeoutMs);
  const lines = listing.split("\n");
  const stale = lines
    .map((line) => /^-N (\S+)$/.exec(line)?.[1])
    .filter((chain): chain is string => {
      if (chain === undefined) return false;
      const pid = pidOfChain(chain);
      return pid !== undefined && pid !== process.pid && !alive(pid);
    });
  for (const chain of stale) {
    for (const line of lines) {
      const m = /^-A (INPUT|OUTPUT) (.*)$/.exec(line);
      if (!m || !line.endsWith(`-j ${chain}`)) continue;
      await runIptables(iptables, ["-D", m[1]!, ...m[2]!.split(" ")], timeoutMs).catch(() => "");
    }
    await runIptables(iptables, ["-F", chain], timeoutMs).catch(() => "");
    await runIptables(iptables, ["-X", chain], timeoutMs);
  }
  return stale;
}

/**
 * Creates a chain of our own, jumped to from INPUT for loopback packets, and returns the
 * faults that put rules in it. Rejects with the reason when kernel faults are not available
 * (see `kernelFaultsSupport()`). Removes stale chains of dead processes first.
 */
export async function startKernelFaults(
  options: StartKernelFaultsOptions = {},
): Promise<KernelFaults> {
  const timeoutMs = options.commandTimeoutMs ?? DEFAULT_IPTABLES_TIMEOUT_MS;
  const hosts = (options.hosts ?? []).map((h) => checkLoopback(h, "startKernelFaults hosts"));
  const ports = options.ports ?? [];
  if (ports.length > 15) {
    throw new RangeError(
      `startKernelFaults: at most 15 ports (iptables multiport), not ${ports.length}`,
    );
  }
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65_535) {
      throw new RangeError(`startKernelFaults: ${p} is not a port`);
    }
  }
  let iptables = options.iptables;
  if (iptables === undefined) {
    const support = await kernelFaultsSupport({ commandTimeoutMs: timeoutMs });
    if (!support.available) throw new Error(`startKernelFaults: ${support.reason}`);
    iptables = support.iptables;
  }
  const cmd = iptables;
  const run = (args: string[]) => runIptables(cmd, args, timeoutMs);

  await removeStaleKernelFaultChains(cmd, timeoutMs);
  const chain = `${KERNEL_FAULTS_CHAIN_PREFIX}${process.pid}-${randomBytes(3).toString("hex")}`;
  await run(["-t", "filter", "-N", chain]);
  const removeSync = () => {
    runIptablesSync(cmd, ["-D", "INPUT", ...jumpSpec(chain)], timeoutMs);
    runIptablesSync(cmd, ["-F", chain], timeoutMs);
    runIptablesSync(cmd, ["-X", chain], timeoutMs);
  };
  process.once("exit", removeSync);
  try {
    await run(["-I", "INPUT", "1", ...jumpSpec(chain)]);
  } catch (err) {
    process.removeListener("exit", removeSync);
    removeSync();
    throw err;
  }

  const portMatch =
    ports.length > 0 ? ["-p", "tcp", "-m", "multiport", "--ports", ports.join(",")] : [];
  let closed: Promise<void> | undefined;
  const needOpen = (what: string) => {
    if (closed) throw new Error(`KernelFaults.${what}: closed`);
  };
  /** The rules that block packets matching `match` (source/destination options). */
  const block = async (match: string[], mode: BlockMode = "drop") => {
    if (mode === "drop") {
      await run(["-A", chain, ...match, ...portMatch, "-j", "DROP"]);
      return;
    }
    if (mode !== "reject") throw new RangeError(`unknown block mode ${JSON.stringify(mode)}`);
    // The resets (and ICMP errors) this sends travel the other way, which a partition blocks
    // too: resets are let through, and ICMP (not matched here) passes.
    await run([
      "-A",
      chain,
      ...match,
      ...(ports.length > 0 ? portMatch : ["-p", "tcp"]),
      "!",
      "--tcp-flags",
      "RST",
      "RST",
      "-j",
      "REJECT",
      "--reject-with",
      "tcp-reset",
    ]);
    if (ports.length === 0) {
      await run([
        "-A",
        chain,
        ...match,
        "-p",
        "udp",
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-port-unreachable",
      ]);
    }
  };
  const oneWay = (from: string, to: string, mode?: BlockMode) =>
    block(["-s", from, "-d", to], mode);

  const faults: KernelFaults = {
    chain,
    iptables: cmd,
    async partition(a, b, opts = {}) {
      needOpen("partition");
      checkLoopback(a, "partition");
      checkLoopback(b, "partition");
      if (a === b) throw new RangeError(`partition: ${a} with itself`);
      await oneWay(a, b, opts.mode);
      await oneWay(b, a, opts.mode);
    },
    async isolate(host, opts = {}) {
      needOpen("isolate");
      checkLoopback(host, "isolate");
      if (opts.clients) {
        // Every other loopback address, both ways (the jump already limits us to 127/8).
        await block(["-s", host, "!", "-d", host], opts.mode);
        await block(["!", "-s", host, "-d", host], opts.mode);
        return;
      }
      const others = hosts.filter((h) => h !== host);
      if (others.length === 0) {
        throw new Error(
          `isolate(${host}): no other hosts to cut it off from; pass hosts to startKernelFaults, or { clients: true }`,
        );
      }
      for (const other of others) {
        await oneWay(host, other, opts.mode);
        await oneWay(other, host, opts.mode);
      }
    },
    async dropFrom(from, to, opts = {}) {
      needOpen("dropFrom");
      checkLoopback(from, "dropFrom");
      checkLoopback(to, "dropFrom");
      if (from === to) throw new RangeError(`dropFrom: ${from} to itself`);
      await oneWay(from, to, opts.mode);
    },
    async heal() {
      if (closed) return;
      await run(["-F", chain]);
    },
    async rules() {
      needOpen("rules");
      const out = await run(["-S", chain]);
      return out.split("\n").filter((line) => line.startsWith("-A "));
    },
    close() {
      closed ??= (async () => {
        process.removeListener("exit", removeSync);
        const errors: unknown[] = [];
        for (const args of [
          ["-D", "INPUT", ...jumpSpec(chain)],
          ["-F", chain],
          ["-X", chain],
        ]) {
          await run(args).catch((err: unknown) => errors.push(err));
        }
        if (errors.length > 0) {
          throw new AggregateError(errors, `KernelFaults.close: could not remove chain ${chain}`);
        }
      })();
      return closed;
    },
    [Symbol.asyncDispose]() {
      return faults.close();
    },
  };
  return faults;
}
