import {
  getJson,
  mountFaultyFs,
  mountTmpfs,
  type FaultyFs,
  type TestNode,
  type Tmpfs,
} from "@chorus/testing";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * The committed events of `stream` as `node` serves them over HTTP (ids, in order); over
 * https trusting `ca` when given. undefined when the node does not answer 200.
 */
export async function idsOn(
  node: TestNode,
  stream: string,
  ca?: string,
): Promise<string[] | undefined> {
  const scheme = ca === undefined ? "http" : "https";
  try {
    const res = await getJson(
      `${scheme}://${node.httpEndpoint}/streams/${stream}?count=1000`,
      2_000,
      ca,
    );
    if (res.status !== 200) return undefined;
    return (res.body as { events: { eventId: string }[] }).events.map((e) => e.eventId);
  } catch {
    return undefined;
  }
}

/** The epoch a node's gossip record shows (its last EPOCH record). */
export async function epochOf(node: TestNode): Promise<number> {
  const res = await getJson(`http://${node.httpEndpoint}/gossip`, 2_000);
  const members = (res.body as { members: { instanceId: string; epochNumber: number }[] }).members;
  const info = await getJson(`http://${node.httpEndpoint}/info`, 2_000);
  const self = members.find(
    (m) => m.instanceId === (info.body as { instanceId: string }).instanceId,
  );
  return self?.epochNumber ?? -1;
}

/** One "cluster role changed" line of a node's log. */
export interface RoleChange {
  /** When the node logged it (its wall clock, ms since the Unix epoch). */
  readonly timeMs: number;
  readonly role: "follower" | "preCandidate" | "candidate" | "leader" | "learner";
  readonly epoch: number;
  readonly leader: string | null;
}

/** Every role change `node` has logged, oldest first (this run and any before a restart). */
export function roleChanges(node: TestNode): RoleChange[] {
  const changes: RoleChange[] = [];
  for (const line of node.output().split("\n")) {
    if (!line.includes('"cluster role changed"')) continue;
    // The output interleaves stdout (JSON lines) with stderr, where native code may print
    // without a newline (LMDB: "Write error: ..." on a full disk): the entry starts at "{".
    let entry: Omit<RoleChange, "timeMs"> & { time: number };
    try {
      entry = JSON.parse(line.slice(line.indexOf("{"))) as typeof entry;
    } catch {
      continue;
    }
    changes.push({
      timeMs: entry.time,
      role: entry.role,
      epoch: entry.epoch,
      leader: entry.leader,
    });
  }
  return changes;
}

/**
 * `count` tmpfs mounts of `bytes` each, one per node of a disk-full test; or why they cannot
 * be had (mounting needs root), with any mounted so far unmounted.
 */
export async function tmpfsPerNode(
  count: number,
  bytes: number,
): Promise<{ mounts: Tmpfs[]; skipReason: string | null }> {
  const mounts: Tmpfs[] = [];
  for (let i = 0; i < count; i++) {
    const m = await mountTmpfs(bytes);
    if (typeof m === "string") {
      for (const done of mounts) await done.unmount();
      return { mounts: [], skipReason: m };
    }
    mounts.push(m);
  }
  return { mounts, skipReason: null };
}

/** An empty data directory on each mount (whatever an earlier attempt left there removed). */
export async function emptyDataDirs(mounts: readonly Tmpfs[]): Promise<string[]> {
  return Promise.all(
    mounts.map(async (m) => {
      const d = join(m.dir, "db");
      await rm(join(m.dir, "filler"), { force: true });
      await rm(d, { recursive: true, force: true });
      await mkdir(d, { recursive: true });
      return d;
    }),
  );
}

/**
 * `count` faulty file systems (@chorus/testing's mountFaultyFs), one per node; or why they
 * cannot be had (root, /dev/fuse and python3-fusepy are needed), with any mounted so far
 * unmounted.
 */
export async function faultyFsPerNode(
  count: number,
): Promise<{ mounts: FaultyFs[]; skipReason: string | null }> {
  const mounts: FaultyFs[] = [];
  for (let i = 0; i < count; i++) {
    const m = await mountFaultyFs();
    if (typeof m === "string") {
      for (const done of mounts) await done.unmount();
      return { mounts: [], skipReason: m };
    }
    mounts.push(m);
  }
  return { mounts, skipReason: null };
}

/**
 * A data directory `db` on each faulty mount, its faults healed and whatever an earlier test
 * left there removed; created when `create`, else left for the node to create.
 */
export async function faultyDataDirs(
  mounts: readonly FaultyFs[],
  create: boolean,
): Promise<string[]> {
  return Promise.all(
    mounts.map(async (m) => {
      await m.heal();
      const dir = join(m.dir, "db");
      await rm(dir, { recursive: true, force: true });
      if (create) await mkdir(dir, { recursive: true });
      return dir;
    }),
  );
}
