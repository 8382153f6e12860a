// `npm run chaos -- --real --minutes N [--seed S] [--phases disk,mem,pg,parts]`: the
// real-process nemesis soak (scripts/chaos.mjs dispatches `--real` here). Real chorus-server
// processes on loopback hosts, on disk and with --mem-db voters, stateless instances on one
// PostgreSQL database (`pg`), and two replication groups of one partitioned deployment
// (`parts`), under a random fault schedule drawn from the seed while writers and
// subscribers run; then heal, wait until every node is caught up and check the histories. Exit 0 when every check passed, 1 on a violation (with the seed
// and the faults to replay it), 2 on a usage error.
import { kernelFaultsSupport, postgresSupport } from "@chorus/testing";
import { describeInjected, faultyFsUnavailable, tmpfsUnavailable } from "./nemesis.js";
import {
  REPLICAS,
  ELECTION_TIMEOUT_MS,
  NODES,
  runPhase,
  type PhaseName,
  type PhaseResult,
} from "./phase.js";
import { GROUPS, runPartitionsPhase } from "./partitions-phase.js";
import { runPostgresPhase } from "./postgres-phase.js";
import {
  describePlanned,
  NETWORK_FAULTS,
  planFaults,
  POSTGRES_FAULTS,
  PROCESS_FAULTS,
  type AnyFaultKind,
  type FaultKind,
  type PlannedFault,
} from "./schedule.js";

export const DEFAULT_MINUTES = 5;
const PHASES: readonly PhaseName[] = ["disk", "mem", "pg", "parts"];
/** The phases a run without --phases runs. */
const DEFAULT_PHASES: readonly PhaseName[] = ["disk", "mem", "pg", "parts"];
const ALL_FAULTS: readonly AnyFaultKind[] = [
  ...PROCESS_FAULTS,
  ...NETWORK_FAULTS,
  ...POSTGRES_FAULTS,
];

export interface RealChaosArgs {
  readonly minutes: number;
  readonly seed: number;
  readonly phases: readonly PhaseName[];
  /** Only these fault kinds (default: every kind the phase and the machine allow). */
  readonly faults: readonly AnyFaultKind[] | undefined;
}

export class UsageError extends Error {
  override name = "UsageError";
}

export const USAGE =
  "usage: npm run chaos -- --real [--minutes N] [--seed S] [--phases disk,mem,pg] [--faults K,...]\n" +
  "  --minutes N   total time under faults, split over the phases (fractions allowed; default 5)\n" +
  "  --seed S      the fault schedule's seed (an integer; default random): replays a schedule\n" +
  "  --phases P    disk (nodes on disk), mem (--mem-db voters), pg (instances on one\n" +
  "                PostgreSQL database; skipped without PostgreSQL), parts (two replication\n" +
  "                groups, one on disk and one --mem-db, through partitioned clients),\n" +
  "                comma-separated (default disk,mem,pg,parts)\n" +
  "  --faults K,K  only these fault kinds (to narrow a replay down), of:\n" +
  `                ${ALL_FAULTS.join(", ")}`;

/** Parses the flags after `--real`; throws UsageError on anything unknown or malformed. */
export function parseRealArgs(
  argv: readonly string[],
  random: () => number = Math.random,
): RealChaosArgs {
  let minutes = DEFAULT_MINUTES;
  let seed: number | undefined;
  let phases: readonly PhaseName[] = DEFAULT_PHASES;
  let faults: AnyFaultKind[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const value = (): string => {
      const v = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (v === undefined || v === "") throw new UsageError(`chaos: ${name} needs a value`);
      return v;
    };
    if (name === "--real") continue;
    if (name === "--minutes") {
      minutes = Number(value());
      if (!(minutes > 0) || !Number.isFinite(minutes)) {
        throw new UsageError("chaos: --minutes takes a positive number");
      }
    } else if (name === "--seed") {
      const v = value();
      seed = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(seed) || seed > 0xffffffff) {
        throw new UsageError(`chaos: --seed takes an integer 0..4294967295, not ${v}`);
      }
    } else if (name === "--phases") {
      const list = value().split(",");
      const bad = list.filter((p) => !(PHASES as readonly string[]).includes(p));
      if (bad.length > 0 || list.length === 0) {
        throw new UsageError(
          `chaos: unknown phase ${bad.join(", ")} (known: ${PHASES.join(", ")})`,
        );
      }
      phases = [...new Set(list)] as PhaseName[];
    } else if (name === "--faults") {
      const list = value().split(",");
      const bad = list.filter((k) => !(ALL_FAULTS as readonly string[]).includes(k));
      if (bad.length > 0) {
        throw new UsageError(`chaos: unknown fault kind ${bad.join(", ")}\n${USAGE}`);
      }
      faults = list as AnyFaultKind[];
    } else {
      throw new UsageError(`chaos: unknown option ${arg} with --real\n${USAGE}`);
    }
  }
  return { minutes, seed: seed ?? Math.floor(random() * 0x100000000), phases, faults };
}

/** The fault kinds of a phase on this machine. */
export function kindsOf(
  phase: "disk" | "mem",
  capabilities: { kernelFaults: boolean; tmpfs: boolean; faultyFs?: boolean },
): FaultKind[] {
  const kinds: FaultKind[] =
    phase === "mem"
      ? ["memdb-restart-leader", "memdb-restart-node", "pause-leader", "pause-node"]
      : ["kill-leader", "kill-node", "pause-leader", "pause-node"];
  if (phase === "disk") kinds.push("disk-stall-leader", "disk-stall-node");
  if (phase === "disk" && capabilities.tmpfs) kinds.push("disk-full");
  if (phase === "disk" && capabilities.faultyFs === true) kinds.push("disk-eio", "power-loss");
  for (const k of NETWORK_FAULTS) {
    if (k.startsWith("kernel-") && !capabilities.kernelFaults) continue;
    kinds.push(k);
  }
  return kinds;
}

const print = (line: string) => process.stdout.write(`${line}\n`);

/** Runs the soak; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: RealChaosArgs;
  try {
    args = parseRealArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const support = await kernelFaultsSupport();
  const tmpfsWhyNot = await tmpfsUnavailable();
  const faultyFsWhyNot = await faultyFsUnavailable();
  const capabilities = {
    kernelFaults: support.available,
    tmpfs: tmpfsWhyNot === undefined,
    faultyFs: faultyFsWhyNot === undefined,
  };
  if (!support.available) print(`chaos: note: kernel partitions skipped (${support.reason})`);
  if (tmpfsWhyNot !== undefined) print(`chaos: note: disk-full skipped (${tmpfsWhyNot})`);
  if (faultyFsWhyNot !== undefined) {
    print(`chaos: note: disk-eio and power-loss skipped (${faultyFsWhyNot})`);
  }

  const phaseMs = (args.minutes * 60_000) / args.phases.length;
  const replay =
    `npm run chaos -- --real --minutes ${args.minutes} --seed ${args.seed}` +
    (args.phases.join(",") === DEFAULT_PHASES.join(",")
      ? ""
      : ` --phases ${args.phases.join(",")}`) +
    (args.faults === undefined ? "" : ` --faults ${args.faults.join(",")}`);
  print(
    `chaos --real: seed ${args.seed}, ${args.minutes} min under faults ` +
      `(${args.phases.map((p) => `${p} ${(phaseMs / 1_000).toFixed(0)}s`).join(", ")}); replay: ${replay}`,
  );

  // An interrupt stops the phase in progress (its cluster, clients, tmpfs), then exits.
  const interruptCleanups = new Set<() => Promise<void>>();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130); // a second one: the exit hooks kill what is left
    interrupted = true;
    print(`chaos: ${signal}: stopping the cluster and cleaning up`);
    void Promise.allSettled([...interruptCleanups].map((c) => c())).then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const plans = new Map<PhaseName, { process: PlannedFault[]; network: PlannedFault[] }>();
  const results: PhaseResult[] = [];
  let failure: string | undefined;
  try {
    for (const phase of args.phases) {
      const only = args.faults;
      const onInterrupt = (cleanup: () => Promise<void>) => {
        interruptCleanups.add(cleanup);
        return () => interruptCleanups.delete(cleanup);
      };
      if (phase === "pg") {
        const pg = postgresSupport();
        if (!pg.ok) {
          print(`chaos: note: phase pg skipped (${pg.reason})`);
          continue;
        }
        try {
          results.push(
            await runPostgresPhase({
              seed: args.seed,
              faultMs: phaseMs,
              kinds: POSTGRES_FAULTS.filter((k) => only === undefined || only.includes(k)),
              print,
              onInterrupt,
            }),
          );
        } catch (err) {
          failure = `phase pg could not run: ${err instanceof Error ? err.message : String(err)}`;
          break;
        }
        if (results.some((r) => r.violations.length > 0)) break;
        continue;
      }
      if (phase === "parts") {
        // Group a on disk (no tmpfs), group b with --mem-db and no iptables rules of its own.
        const lanesOf = (group: (typeof GROUPS)[number]) =>
          planFaults({
            seed: args.seed,
            phase: `parts-${group}`,
            durationMs: phaseMs,
            nodes: NODES,
            kinds: kindsOf(group === "a" ? "disk" : "mem", {
              kernelFaults: group === "a" && capabilities.kernelFaults,
              tmpfs: false,
            }).filter((k) => only === undefined || only.includes(k)),
            electionTimeoutMs: ELECTION_TIMEOUT_MS,
          });
        const lanes = { a: lanesOf("a"), b: lanesOf("b") };
        plans.set(phase, {
          process: [...lanes.a.process, ...lanes.b.process],
          network: [...lanes.a.network, ...lanes.b.network],
        });
        try {
          results.push(
            await runPartitionsPhase({
              seed: args.seed,
              faultMs: phaseMs,
              lanes,
              kernelFaults: capabilities.kernelFaults,
              print,
              onInterrupt,
            }),
          );
        } catch (err) {
          failure = `phase parts could not run: ${err instanceof Error ? err.message : String(err)}`;
          break;
        }
        if (results.some((r) => r.violations.length > 0)) break;
        continue;
      }
      const kinds = kindsOf(phase, capabilities).filter(
        (k) => only === undefined || only.includes(k),
      );
      const lanes = planFaults({
        seed: args.seed,
        phase,
        durationMs: phaseMs,
        // The read-only replica is killed, paused, stalled and cut off too.
        nodes: NODES + REPLICAS,
        kinds,
        electionTimeoutMs: ELECTION_TIMEOUT_MS,
      });
      plans.set(phase, lanes);
      try {
        results.push(
          await runPhase({
            name: phase,
            seed: args.seed,
            faultMs: phaseMs,
            lanes,
            kinds,
            kernelFaults: capabilities.kernelFaults,
            tmpfs: phase === "disk" && capabilities.tmpfs,
            faultyFs:
              phase === "disk" && (kinds.includes("disk-eio") || kinds.includes("power-loss")),
            print,
            onInterrupt,
          }),
        );
      } catch (err) {
        failure = `phase ${phase} could not run: ${err instanceof Error ? err.message : String(err)}`;
        break;
      }
      if (results.some((r) => r.violations.length > 0)) break;
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  const counts = new Map<string, number>();
  for (const r of results)
    for (const f of r.injected) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1);
  const sum = (f: (r: PhaseResult) => number) => results.reduce((s, r) => s + f(r), 0);
  const delivered = sum((r) => [...r.delivered.values()].reduce((a, b) => a + b, 0));
  const violations = results.flatMap((r) => r.violations.map((v) => `[${r.name}] ${v}`));
  // A disk-eio fault restarts its node when a write failed meanwhile (its note says so).
  const restarted = results
    .flatMap((r) => r.injected)
    .filter((f) => f.kind === "disk-eio" && f.note.includes("restarted")).length;
  const faults =
    [...counts]
      .map(([k, n]) => `${k}=${n}${k === "disk-eio" ? ` (${restarted} restarted)` : ""}`)
      .join(" ") || "none";
  const unknownReasons = new Map<string, number>();
  for (const r of results) {
    for (const [k, n] of r.unknownReasons) unknownReasons.set(k, (unknownReasons.get(k) ?? 0) + n);
  }
  const status = failure !== undefined ? "ERROR" : violations.length > 0 ? "FAILED" : "passed";
  print(
    `chaos --real ${status}: seed ${args.seed}, phases ${results.map((r) => r.name).join(",") || "none"}; ` +
      `faults ${sum((r) => r.injected.length)} (${faults}); ` +
      `appends checked: acknowledged ${sum((r) => r.acknowledged)}, unknown ${sum((r) => r.unknown)}, ` +
      `failed ${sum((r) => r.failed)}; events delivered to subscribers ${delivered} ` +
      `(resubscribes ${sum((r) => r.resubscribes)}); persistent group ` +
      results
        .map((r) => {
          const drops = [...r.persistent.drops].map(([k, n]) => `${k}=${n}`).join(" ");
          return (
            `${r.name}: ${r.persistent.strategy}, handed ${r.persistent.handed}, by two consumers ` +
            `${r.persistent.byTwo}, acks made again ${r.persistent.ackRetries}` +
            (drops ? `, subscriptions ended: ${drops}` : "")
          );
        })
        .join("; ") +
      `; log entries checked ${sum((r) => r.logEntries)}; ` +
      `violations ${violations.length}` +
      (unknownReasons.size > 0
        ? `; unknown outcomes: ${[...unknownReasons].map(([k, n]) => `${k}=${n}`).join(" ")}`
        : ""),
  );
  if (failure === undefined && violations.length === 0) return 0;

  if (failure !== undefined) print(`chaos: ${failure}`);
  const shown = violations.slice(0, 50);
  for (const v of shown) print(`chaos: violation ${v}`);
  if (violations.length > shown.length)
    print(`chaos: ... and ${violations.length - shown.length} more`);
  print(`chaos: fault schedule of seed ${args.seed}:`);
  for (const [phase, lanes] of plans) {
    const injected = results.find((r) => r.name === phase)?.injected;
    if (injected !== undefined) {
      print(`  ${phase}, as injected:`);
      for (const f of injected) print(`    ${describeInjected(f)}`);
    } else {
      print(`  ${phase}, as planned:`);
      for (const f of [...lanes.process, ...lanes.network].sort((a, b) => a.atMs - b.atMs)) {
        print(`    ${describePlanned(f)}`);
      }
    }
  }
  for (const r of results)
    if (r.logsDir !== undefined) print(`chaos: ${r.name} node logs in ${r.logsDir}`);
  print(`chaos: replay: ${replay}`);
  return 1;
}
