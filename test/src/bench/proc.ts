/**
 * What the bench reads about processes from Linux's /proc: CPU time (`/proc/<pid>/stat`) and
 * anonymous resident memory (`/proc/<pid>/status`). Every read is synchronous and small, and
 * happens outside a timed loop.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { median, round } from "./stats.js";

/** Clock ticks per second of /proc CPU times (`getconf CLK_TCK`, 100 on every usual Linux). */
export function clockTicksPerSecond(): number {
  const text = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 });
  const ticks = Number(text.trim());
  if (!Number.isInteger(ticks) || ticks <= 0) throw new Error(`getconf CLK_TCK said ${text}`);
  return ticks;
}

/** utime + stime of process `pid`, in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Field 2, the command, is in parentheses and may hold spaces: count from after it.
  // After ")" come field 3 (state) onwards; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`cannot read utime/stime of pid ${pid} from /proc/${pid}/stat`);
  }
  return utime + stime;
}

/** The server processes whose CPU an append row reports. */
export interface ServerPids {
  leader: number;
  /** Empty with one node. */
  followers: number[];
  /** A database server's processes (--db postgres): their CPU is `db_cpu_us`. */
  database?: number[];
}

/** CPU of each process at the start of a measured interval. */
export interface CpuMark {
  client: NodeJS.CpuUsage;
  pids: ServerPids;
  leaderTicks: number;
  followerTicks: number[];
  databaseTicks: number;
}

/**
 * CPU microseconds per event over an interval: the bench process itself (`client_cpu_us`),
 * the leader (`leader_cpu_us`) and, with followers, their mean (`follower_cpu_us`).
 */
export interface CpuColumns {
  client_cpu_us: number;
  leader_cpu_us: number;
  follower_cpu_us?: number;
  /** All processes of the database server together (--db postgres). */
  db_cpu_us?: number;
}

/** Ticks of processes that may have exited meanwhile (a gone one counts 0). */
export function ticksOfAll(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += cpuTicks(pid);
    } catch {
      // exited
    }
  }
  return sum;
}

/** CPU per event of the bench process and the servers over a measured interval. */
export class CpuMeter {
  constructor(private readonly ticksPerSecond: number = clockTicksPerSecond()) {}

  /** Call right before the timed loop (after any awaits that find the pids). */
  start(pids: ServerPids): CpuMark {
    const leaderTicks = cpuTicks(pids.leader);
    const followerTicks = pids.followers.map(cpuTicks);
    const databaseTicks = ticksOfAll(pids.database ?? []);
    return { pids, leaderTicks, followerTicks, databaseTicks, client: process.cpuUsage() };
  }

  /** Call right after the timed loop; `events` is how many events it moved. */
  stop(mark: CpuMark, events: number): CpuColumns {
    const client = process.cpuUsage(mark.client);
    const perEvent = (ticks: number) => round((ticks * 1e6) / this.ticksPerSecond / events, 1);
    const leader = cpuTicks(mark.pids.leader) - mark.leaderTicks;
    const followers = mark.pids.followers.map((pid, i) => cpuTicks(pid) - mark.followerTicks[i]!);
    const columns: CpuColumns = {
      client_cpu_us: round((client.user + client.system) / events, 1),
      leader_cpu_us: perEvent(leader),
    };
    if (followers.length > 0) {
      columns.follower_cpu_us = perEvent(followers.reduce((a, b) => a + b, 0) / followers.length);
    }
    if (mark.pids.database !== undefined)
      columns.db_cpu_us = perEvent(ticksOfAll(mark.pids.database) - mark.databaseTicks);
    return columns;
  }
}

/** A process and its children (`pgrep -P`): a database server's postmaster and backends. */
export function processTree(pid: number): number[] {
  let children: number[] = [];
  try {
    const text = execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8", timeout: 5_000 });
    children = text.split("\n").filter(Boolean).map(Number);
  } catch {
    // no children (pgrep exits 1)
  }
  return [pid, ...children];
}

/** Anonymous resident memory of `pid` in KiB (RssAnon: no file-backed or mapped-file pages). */
export function rssAnonKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^RssAnon:\s+(\d+)\s+kB$/m.exec(status);
  if (!match?.[1]) throw new Error(`no RssAnon in /proc/${pid}/status`);
  return Number(match[1]);
}

/** The median of `readings` RssAnon readings of `pid`, `intervalMs` apart, in KiB. */
export async function medianRssAnonKiB(
  pid: number,
  readings = 3,
  intervalMs = 200,
): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < readings; i++) {
    if (i > 0) await delay(intervalMs);
    values.push(rssAnonKiB(pid));
  }
  return median(values);
}
