// The soak's shared-database phase (`--phases pg`): three stateless chorus-server instances on
// one real PostgreSQL database, each reaching it through a fault proxy of its own, under a
// fault schedule drawn from the seed, with the same workload and checkers as the replicated
// phases (writers with every expected-version kind, catch-up subscribers, a persistent group).
// The faults are the ones this mode has: instances killed and restarted or paused, an
// instance's database link blackholed, reset, slowed or losing the database's answers, the
// instance's sessions ended by the database (pg_terminate_backend), the database server
// crashing (SIGKILL of every PostgreSQL process, then crash recovery on the same data
// directory), and, as root, the database's disk filling up (the phase's tables live in a
// tablespace on a tmpfs of their own, ../postgres/tablespace.ts).
import {
  startFaultProxy,
  startNode,
  startPostgres,
  waitFor,
  type FaultProxy,
  type TestNode,
  type TestPostgres,
} from "@chorus/testing";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  checkAppendHistory,
  checkLogsAgree,
  committedLogOn,
  type LogEntry,
} from "../cluster/write-checker.js";
import type { InjectedFault } from "./nemesis.js";
import {
  CAUGHT_UP_TIMEOUT_MS,
  FIRST_WRITES_TIMEOUT_MS,
  PROGRESS_APPENDS,
  START_TIMEOUT_MS,
  phaseResult,
  PhaseRun,
  saveLogs,
  type PhaseResult,
} from "./phase.js";
import {
  deriveSeed,
  pick,
  randomInt,
  seededRandom,
  type PostgresFaultKind,
  type Random,
} from "./schedule.js";
import { clientsOf, streamName } from "./workload.js";
import { tmpfsTablespace, type TmpfsTablespace } from "../postgres/tablespace.js";

export const INSTANCES = 3;
/** The phase's database. */
const DATABASE = "chaos";
/** The pause between two faults, ms. */
const GAP_MS = { min: 200, max: 1_500 } as const;
/** How long each fault lasts before it is healed, ms (a reset is instant). */
const DURATION_MS: Record<PostgresFaultKind, { min: number; max: number }> = {
  "kill-instance": { min: 300, max: 3_000 },
  "pause-instance": { min: 300, max: 3_000 },
  // Past about 6 s, the database ends a cut-off lock holder's session and another instance
  // takes the persistent groups over while the first still runs (docs/postgres.md).
  "db-link-blackhole": { min: 300, max: 10_000 },
  "db-link-reset": { min: 0, max: 0 },
  "db-link-lost-replies": { min: 300, max: 6_000 },
  "db-terminate-sessions": { min: 0, max: 0 },
  "db-link-slow": { min: 1_000, max: 8_000 },
  "db-crash": { min: 200, max: 2_000 },
  "db-disk-full": { min: 500, max: 5_000 },
};
/** The tmpfs the phase's tables live on (db-disk-full); it only takes what is written. */
const TABLESPACE_BYTES = 512 * 1024 * 1024;

export interface PostgresPhaseOptions {
  readonly seed: number;
  /** Faults are injected for this long. */
  readonly faultMs: number;
  /** Only these fault kinds (default: every one). */
  readonly kinds: readonly PostgresFaultKind[];
  readonly print: (line: string) => void;
  /** Registers a cleanup for an interrupt (SIGINT); returns its removal. */
  readonly onInterrupt: (cleanup: () => Promise<void>) => () => void;
}

/** The database URL with its host and port replaced by the proxy's. */
function through(url: string, proxy: FaultProxy): string {
  const u = new URL(url);
  u.host = `${proxy.endpoint.host}:${proxy.endpoint.port}`;
  return u.toString();
}

export async function runPostgresPhase(options: PostgresPhaseOptions): Promise<PhaseResult> {
  const { print } = options;
  const tag = "chaos[pg]";
  const run = new PhaseRun(tag, print);
  const { violation, violations } = run;
  let pg: TestPostgres | undefined;
  let tablespace: TmpfsTablespace | undefined;
  const proxies: FaultProxy[] = [];
  const instances: TestNode[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      for (const n of instances) if (n.running) n.resume();
      await run.stopWorkload();
      await Promise.all(instances.map((n) => n.stop().catch(() => undefined)));
      await Promise.all(proxies.map((p) => p.close().catch(() => undefined)));
      await pg?.stop().catch(() => undefined);
      await tablespace?.tmpfs.unmount().catch(() => undefined);
    })();
    return cleaned;
  };
  const removeInterrupt = options.onInterrupt(cleanup);
  await run.noteOwnDescriptors();
  try {
    print(`${tag}: starting PostgreSQL and ${INSTANCES} instances on it, each through a proxy`);
    const db = await startPostgres();
    pg = db;
    const url = await db.createDatabase(DATABASE);
    let kinds = options.kinds;
    if (kinds.includes("db-disk-full")) {
      const space = await tmpfsTablespace(db, DATABASE, TABLESPACE_BYTES);
      if (typeof space === "string") {
        print(`${tag}: note: db-disk-full skipped (${space})`);
        kinds = kinds.filter((k) => k !== "db-disk-full");
      } else tablespace = space;
    }
    for (let i = 0; i < INSTANCES; i++) {
      proxies.push(await startFaultProxy({ target: { host: db.host, port: db.port } }));
    }
    // Together: the schema is created once, whichever instance gets there first.
    instances.push(
      ...(await Promise.all(
        proxies.map((proxy) =>
          startNode({ databaseUrl: through(url, proxy), startTimeoutMs: START_TIMEOUT_MS }),
        ),
      )),
    );
    const connectionString = `chorus+discover://${instances.map((n) => n.httpEndpoint).join(",")}?tls=false`;
    const { writers: w, strategy } = await run.startWorkload(
      clientsOf(connectionString),
      options.seed,
      "pg",
      [
        { name: "$all subscriber" },
        { name: `${streamName(0)} subscriber`, streamId: streamName(0), nodePreference: "random" },
      ],
    );
    await waitFor(() => w.acknowledged >= PROGRESS_APPENDS, {
      timeoutMs: FIRST_WRITES_TIMEOUT_MS,
      message: "the first appends acknowledged",
    });

    await run.noteNodeDescriptors({ nodes: instances }, "instances: ");
    const injected: InjectedFault[] = [];
    const active = new Set<string>();
    const faultsStart = performance.now();
    run.startProgress(() => ({ count: injected.length, active: [...active] }));
    const stopFaults = setTimeout(() => run.controller.abort(), options.faultMs);
    await runFaults({
      random: seededRandom(deriveSeed(options.seed, "pg", "faults")),
      kinds,
      db,
      tablespace,
      proxies,
      instances,
      signal: run.controller.signal,
      startMs: faultsStart,
      injected,
      active,
      violation,
    });
    clearTimeout(stopFaults);
    run.stopProgress();

    // Heal: every instance running and resumed, every link open, the database up.
    for (const proxy of proxies) proxy.heal();
    for (const [i, node] of instances.entries()) {
      if (node.running) continue;
      const exit = node.lastExit;
      violation(
        `instance ${i} exited on its own (code ${exit?.code ?? "?"}, signal ${exit?.signal ?? "none"}): ` +
          node.output().trim().split("\n").slice(-3).join(" | "),
      );
      await node
        .restart()
        .catch((err: unknown) => violation(`instance ${i} did not start again: ${String(err)}`));
    }
    print(`${tag}: healed after ${injected.length} faults; waiting for progress`);
    await run.progressAfterHeal();
    for (const v of await w.stop()) violation(v);

    // One log, as every instance serves it.
    let logs: LogEntry[][] = [];
    await waitFor(
      async () => {
        logs = await Promise.all(instances.map((node) => committedLogOn(node)));
        return checkLogsAgree(logs).length === 0;
      },
      {
        timeoutMs: CAUGHT_UP_TIMEOUT_MS,
        intervalMs: 500,
        message: "every instance serves one log",
      },
    ).catch(() => undefined);
    for (const v of checkLogsAgree(logs)) violation(v.replace(/^node/, "instance"));
    const longest = logs.reduce<LogEntry[]>((a, b) => (b.length > a.length ? b : a), []);

    for (const v of checkAppendHistory(w.appends, longest)) violation(`the log: ${v}`);
    const { byTwo } = await run.checkReaders(strategy, [{ partition: undefined, log: longest }]);
    await run.checkNodeDescriptors({ nodes: instances }, "instances: ");

    const logsDir =
      violations.length > 0
        ? await saveLogs(`${options.seed}-pg`, [
            ...instances.map((node, i) => [`instance-${i}.log`, node.output()] as const),
            [
              "postgres.log",
              await readFile(db.logFile, "utf8").catch(
                (err: unknown) => `(not read: ${String(err)})`,
              ),
            ],
          ])
        : undefined;
    return phaseResult({ name: "pg", run, injected, strategy, byTwo, longest, logsDir });
  } finally {
    removeInterrupt();
    await cleanup();
    await run.checkOwnDescriptors();
  }
}

/** The instance's id (`/info`), which names its database sessions. */
async function instanceIdOf(node: TestNode): Promise<string> {
  const res = await fetch(`http://${node.httpEndpoint}/info`, {
    signal: AbortSignal.timeout(5_000),
  });
  const { instanceId } = (await res.json()) as { instanceId?: unknown };
  if (typeof instanceId !== "string" || !/^[0-9a-f-]{36}$/.test(instanceId))
    throw new Error(`no instance id in /info: ${JSON.stringify(instanceId)}`);
  return instanceId;
}

interface FaultRun {
  readonly random: Random;
  readonly kinds: readonly PostgresFaultKind[];
  readonly db: TestPostgres;
  readonly tablespace: TmpfsTablespace | undefined;
  readonly proxies: readonly FaultProxy[];
  readonly instances: readonly TestNode[];
  readonly signal: AbortSignal;
  readonly startMs: number;
  readonly injected: InjectedFault[];
  readonly active: Set<string>;
  readonly violation: (text: string) => void;
}

/** Injects one fault at a time, each healed when its time is up, until the signal aborts. */
async function runFaults(run: FaultRun): Promise<void> {
  const { random, signal } = run;
  const wait = (ms: number) =>
    sleep(ms, undefined, { signal }).then(
      () => true,
      () => false,
    );
  while (!signal.aborted && run.kinds.length > 0) {
    if (!(await wait(randomInt(random, GAP_MS.min, GAP_MS.max)))) return;
    const kind = pick(random, run.kinds);
    const { min, max } = DURATION_MS[kind];
    const holdMs = randomInt(random, min, max);
    const target = randomInt(random, 0, INSTANCES - 1);
    const whole = kind === "db-crash" || kind === "db-disk-full";
    const label = whole ? kind : `${kind}(${target})`;
    const atMs = performance.now() - run.startMs;
    const fault: InjectedFault = {
      kind,
      atMs,
      durationMs: 0,
      nodes: whole ? [] : [target],
      note: "",
    };
    run.injected.push(fault);
    run.active.add(label);
    const node = run.instances[target]!;
    const proxy = run.proxies[target]!;
    try {
      switch (kind) {
        case "kill-instance":
          await node.kill();
          await sleep(holdMs);
          await node.restart();
          break;
        case "pause-instance":
          node.pause();
          await sleep(holdMs);
          node.resume();
          break;
        case "db-link-blackhole":
          proxy.blackhole();
          await sleep(holdMs);
          proxy.heal();
          break;
        case "db-link-reset":
          proxy.resetAll();
          break;
        case "db-link-lost-replies":
          // The database runs what the instance sends (commits included) and its answers are
          // lost: every outcome in that time is unknown to the instance. Then the connections
          // break, as TCP gives up on a link that loses one direction.
          proxy.dropRepliesAfterForwarding();
          await sleep(holdMs);
          proxy.heal();
          proxy.resetAll();
          break;
        case "db-link-slow": {
          // A slow link (or an overloaded database): every answer takes longer, sometimes past
          // the heartbeat's 2 s, so the instance may stop serving while what it sent commits.
          const delayMs = randomInt(random, 50, 1_200);
          proxy.latency({ delayMs, jitterMs: delayMs / 2 });
          fault.note = `${delayMs} ms each way, +50% jitter`;
          await sleep(holdMs);
          proxy.heal();
          break;
        }
        case "db-terminate-sessions": {
          // An operator, a pooler or a failover tool ends the instance's sessions: each gets
          // a FATAL error and its connection closes, in a transaction or not, holding the
          // persistent lock or not. The instance is found by its sessions' name.
          const id = await instanceIdOf(node);
          const ended = await run.db.psql(
            `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'chorus-server ${id}';`,
            DATABASE,
          );
          fault.note = `${ended.trim()} session(s) ended`;
          break;
        }
        case "db-crash":
          await run.db.kill();
          await sleep(holdMs);
          await run.db.restart();
          break;
        case "db-disk-full":
          // The tables' disk has no space left: PostgreSQL refuses to extend a table (53100).
          if (run.tablespace === undefined) break;
          await run.tablespace.tmpfs.fill();
          try {
            await sleep(holdMs);
          } finally {
            await run.tablespace.tmpfs.free();
          }
          break;
      }
    } catch (err) {
      run.violation(`${label}: the fault could not be healed: ${String(err)}`);
    } finally {
      fault.durationMs = performance.now() - run.startMs - atMs;
      run.active.delete(label);
    }
  }
}
