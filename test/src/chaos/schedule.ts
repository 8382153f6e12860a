// The fault schedule of the real-process soak: drawn from a seed, so `--seed S` replays the
// same faults (kinds, targets, times, durations) on a machine with the same capabilities.

/** A deterministic uniform random source in [0, 1) (mulberry32). */
export type Random = () => number;

export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A seed of its own for each phase and lane, derived from the run's seed. */
export function deriveSeed(seed: number, ...labels: string[]): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const ch of labels.join("/")) {
    h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  }
  return h;
}

export const randomInt = (random: Random, min: number, max: number): number =>
  min + Math.floor(random() * (max - min + 1));

export function pick<T>(random: Random, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new RangeError("pick: no items");
  return item;
}

/** A version-4 UUID drawn from `random`: the same seed, the same ids. */
export function seededUuid(random: Random): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16));
  hex[12] = "4";
  hex[16] = "89ab"[Math.floor(random() * 4)]!;
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Faults on processes and disks: one at a time, on one node. */
export const PROCESS_FAULTS = [
  "kill-leader",
  "kill-node",
  "pause-leader",
  "pause-node",
  "memdb-restart-leader",
  "memdb-restart-node",
  "disk-full",
  "disk-stall-leader",
  "disk-stall-node",
  "disk-eio",
  "power-loss",
] as const;

/** Faults on the network between nodes: one at a time. */
export const NETWORK_FAULTS = [
  "proxy-blackhole",
  "proxy-one-way",
  "proxy-reset",
  "proxy-slow",
  "kernel-partition",
  "kernel-isolate",
  "kernel-one-way",
] as const;

/**
 * Faults of the shared-database phase (postgres-phase.ts), one at a time: an instance killed
 * and restarted, or paused; an instance's database link blackholed, reset, slowed or losing
 * the answers; its sessions ended; the database server crashing and recovering; the
 * database's disk full (as root).
 */
export const POSTGRES_FAULTS = [
  "kill-instance",
  "pause-instance",
  "db-link-blackhole",
  "db-link-reset",
  "db-link-lost-replies",
  "db-link-slow",
  "db-terminate-sessions",
  "db-crash",
  "db-disk-full",
] as const;

export type ProcessFaultKind = (typeof PROCESS_FAULTS)[number];
export type NetworkFaultKind = (typeof NETWORK_FAULTS)[number];
/** A fault of the replicated phases. */
export type FaultKind = ProcessFaultKind | NetworkFaultKind;
export type PostgresFaultKind = (typeof POSTGRES_FAULTS)[number];
/** A fault of any phase. */
export type AnyFaultKind = FaultKind | PostgresFaultKind;

/** One planned fault. Targets are node indexes, or the leader at the time of injection. */
export interface PlannedFault {
  readonly lane: "process" | "network";
  readonly kind: FaultKind;
  /** Not before this many ms after the phase's faults start (a lane may run late). */
  readonly atMs: number;
  /** How long the fault lasts before it is healed (0: instantaneous, e.g. a reset). */
  readonly durationMs: number;
  /** The node (or the first node of a pair): an index, or "leader". */
  readonly node: number | "leader";
  /** The other node of a pair (partition, one-way), different from `node` once resolved. */
  readonly peer: number;
  /** Kernel faults: "drop" (silence) or "reject" (resets). */
  readonly mode: "drop" | "reject";
  /** kernel-isolate: also cut the node off from the clients. */
  readonly clients: boolean;
  /** disk-eio: the node's writes fail as well as its syncs. */
  readonly writesToo: boolean;
  /** proxy-slow: each chunk on the node's links is delayed this long (plus up to half again). */
  readonly delayMs: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  /** The phase's name, part of the lane seeds. */
  readonly phase: string;
  /** Faults are planned to start within this many ms. */
  readonly durationMs: number;
  readonly nodes: number;
  /** The fault kinds this phase may use (what the machine and the phase allow). */
  readonly kinds: readonly FaultKind[];
  /** The cluster's election timeout: pauses last longer than it. */
  readonly electionTimeoutMs: number;
}

/** Ranges, in ms. */
export const LANE_GAP_MS = { min: 500, max: 4_000 } as const;
export const NETWORK_FAULT_MS = { min: 500, max: 5_000 } as const;
/** proxy-slow: one-way delay on a node's links, from a far region to past the election timeout. */
export const SLOW_LINK_MS = { min: 20, max: 800 } as const;
export const KILL_DOWN_MS = { min: 0, max: 3_000 } as const;
export const DISK_FULL_MS = { min: 1_000, max: 5_000 } as const;
/** A disk stall: each log sync started during it takes this long (past 4t: a leader hands over). */
export const DISK_STALL_MS = { min: 300, max: 5_000 } as const;
/** A failing disk: its writes or syncs return EIO for this long. */
export const DISK_EIO_MS = { min: 300, max: 3_000 } as const;

function durationOf(random: Random, kind: FaultKind, electionTimeoutMs: number): number {
  switch (kind) {
    case "kill-leader":
    case "kill-node":
    case "memdb-restart-leader":
    case "memdb-restart-node":
    case "power-loss":
      return randomInt(random, KILL_DOWN_MS.min, KILL_DOWN_MS.max);
    case "pause-leader":
    case "pause-node":
      // Past the longest election timeout ([t, 2t]): the others elect a new leader meanwhile.
      return randomInt(random, 2 * electionTimeoutMs + 200, 6 * electionTimeoutMs);
    case "disk-full":
      return randomInt(random, DISK_FULL_MS.min, DISK_FULL_MS.max);
    case "disk-stall-leader":
    case "disk-stall-node":
      return randomInt(random, DISK_STALL_MS.min, DISK_STALL_MS.max);
    case "disk-eio":
      return randomInt(random, DISK_EIO_MS.min, DISK_EIO_MS.max);
    case "proxy-reset":
      return 0;
    default:
      return randomInt(random, NETWORK_FAULT_MS.min, NETWORK_FAULT_MS.max);
  }
}

function planLane(
  options: ScheduleOptions,
  lane: "process" | "network",
  kinds: readonly FaultKind[],
): PlannedFault[] {
  const random = seededRandom(deriveSeed(options.seed, options.phase, lane));
  const out: PlannedFault[] = [];
  if (kinds.length === 0) return out;
  let atMs = randomInt(random, LANE_GAP_MS.min, LANE_GAP_MS.max);
  while (atMs < options.durationMs) {
    const kind = pick(random, kinds);
    const durationMs = durationOf(random, kind, options.electionTimeoutMs);
    const toLeader = kind.endsWith("-leader") || (lane === "network" && random() < 0.5);
    const node = toLeader ? ("leader" as const) : randomInt(random, 0, options.nodes - 1);
    // A peer offset of 1..nodes-1 from the node: never the node itself once "leader" resolves.
    const peer = randomInt(random, 1, options.nodes - 1);
    const mode = random() < 0.25 ? ("reject" as const) : ("drop" as const);
    const clients = random() < 0.3;
    const writesToo = random() < 0.5;
    const delayMs = randomInt(random, SLOW_LINK_MS.min, SLOW_LINK_MS.max);
    out.push({ lane, kind, atMs, durationMs, node, peer, mode, clients, writesToo, delayMs });
    atMs += durationMs + randomInt(random, LANE_GAP_MS.min, LANE_GAP_MS.max);
  }
  return out;
}

/** The faults of one phase, per lane, in time order. */
export function planFaults(options: ScheduleOptions): {
  process: PlannedFault[];
  network: PlannedFault[];
} {
  const allowed = new Set(options.kinds);
  return {
    process: planLane(
      options,
      "process",
      PROCESS_FAULTS.filter((k) => allowed.has(k)),
    ),
    network: planLane(
      options,
      "network",
      NETWORK_FAULTS.filter((k) => allowed.has(k)),
    ),
  };
}

/** The node a pair fault's peer is, once `node` is resolved. */
export function peerOf(fault: PlannedFault, node: number, nodes: number): number {
  return (node + fault.peer) % nodes;
}

/** One line for a planned fault, e.g. `+12.3s kill-leader leader down 1.2s`. */
export function describePlanned(f: PlannedFault): string {
  const target =
    f.kind.includes("one-way") || f.kind === "kernel-partition"
      ? `${String(f.node)} & +${f.peer}`
      : String(f.node);
  const extra =
    (f.kind.startsWith("kernel-") ? ` ${f.mode}` : "") +
    (f.kind === "kernel-isolate" && f.clients ? " +clients" : "") +
    (f.kind === "disk-eio" && f.writesToo ? " +writes" : "") +
    (f.kind === "proxy-slow" ? ` ${f.delayMs}ms` : "");
  return `+${(f.atMs / 1_000).toFixed(1)}s ${f.kind} ${target}${extra} for ${(f.durationMs / 1_000).toFixed(1)}s`;
}
