// The soak's nemesis: runs a phase's planned faults against a real cluster, two lanes at once
// (process/disk faults on one node at a time; network faults one at a time), heals each fault
// when its time is up, and records what it did. Also the file systems a node's data directory
// moves to: a size-limited tmpfs, so that its disk can be filled and freed, and a faulty one
// (a FUSE mount), so that its writes and syncs can fail with EIO.
import type { FaultyFs, TestCluster } from "@chorus/testing";
import { cp, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { getJson, mountFaultyFs, mountTmpfs, waitFor } from "@chorus/testing";
import { peerOf, type AnyFaultKind, type PlannedFault } from "./schedule.js";

/** How long a `--mem-db` voter may take to be a Follower again after its restart. */
export const MEMDB_RECOVERY_TIMEOUT_MS = 60_000;
/** How long the nemesis looks for the leader before it picks a node instead. */
export const LEADER_LOOKUP_TIMEOUT_MS = 3_000;
/** Size of the tmpfs a node's data directory moves to. */
export const TMPFS_BYTES = 512 * 1024 * 1024;

/** One fault as it was injected. */
export interface InjectedFault {
  readonly kind: AnyFaultKind;
  /** When it started, ms after the phase's faults started. */
  readonly atMs: number;
  /** How long it lasted until healed, ms. */
  durationMs: number;
  /** The nodes it hit, resolved ("leader" became an index). */
  readonly nodes: readonly number[];
  /** What it did beyond its kind ("" for nothing more); set as it runs. */
  note: string;
}

export function describeInjected(f: InjectedFault): string {
  return (
    `+${(f.atMs / 1_000).toFixed(1)}s ${f.kind} node ${f.nodes.join(" & ")}` +
    ` for ${(f.durationMs / 1_000).toFixed(1)}s${f.note === "" ? "" : ` (${f.note})`}`
  );
}

/** A node's data directory on a tmpfs of its own, which `fill()` fills up. */
export interface TmpfsDisk {
  readonly node: number;
  readonly mountDir: string;
  /** Writes a filler file until the tmpfs has no space left. */
  fill(): Promise<void>;
  /** Removes the filler file. */
  free(): Promise<void>;
  /** Unmounts and removes the mount point (after the node has stopped). Idempotent. */
  close(): Promise<void>;
}

/** Whether a tmpfs can be mounted here (root, and `mount -t tmpfs` works): undefined, or why not. */
export async function tmpfsUnavailable(): Promise<string | undefined> {
  const probe = await mountTmpfs(1024 * 1024);
  if (typeof probe === "string") return probe;
  await probe.unmount();
  return undefined;
}

/**
 * Moves node `index`'s data directory onto a fresh size-limited tmpfs: SIGKILL, copy the data
 * there, leave a symlink at the old path (the node's command line stays the same), restart.
 * The tmpfs is unmounted by `close()`, or at the latest when this process exits.
 */
export async function moveToTmpfs(cluster: TestCluster, index: number): Promise<TmpfsDisk> {
  const tmpfs = await mountTmpfs(TMPFS_BYTES);
  if (typeof tmpfs === "string") throw new Error(`moveToTmpfs: ${tmpfs}`);
  const mountDir = tmpfs.dir;
  const disk: TmpfsDisk = {
    node: index,
    mountDir,
    fill: () => tmpfs.fill(),
    free: () => tmpfs.free(),
    close: () => tmpfs.unmount(),
  };
  try {
    await moveDataDir(cluster, index, mountDir);
  } catch (err) {
    await disk.close();
    throw err;
  }
  return disk;
}

/**
 * Moves node `index`'s data directory into `mountDir`: SIGKILL, copy the data there, leave a
 * symlink at the old path (the node's command line stays the same), `copied()`, restart.
 */
async function moveDataDir(
  cluster: TestCluster,
  index: number,
  mountDir: string,
  copied: () => Promise<void> = async () => {},
): Promise<void> {
  const dataDir = cluster.nodes[index]?.dataDir;
  if (dataDir === undefined) throw new Error(`node ${index} has no data directory`);
  await cluster.kill(index);
  const db = join(mountDir, "db");
  await cp(dataDir, db, { recursive: true });
  await rm(dataDir, { recursive: true, force: true });
  await symlink(db, dataDir);
  await copied();
  await cluster.restart(index);
}

/** A node's data directory on a faulty file system of its own (@chorus/testing's mountFaultyFs). */
export interface FaultyDisk {
  readonly node: number;
  readonly fs: FaultyFs;
}

/** Whether a faulty file system can be mounted here: undefined, or why not. */
export async function faultyFsUnavailable(): Promise<string | undefined> {
  const probe = await mountFaultyFs();
  if (typeof probe === "string") return probe;
  await probe.unmount();
  return undefined;
}

/**
 * Moves node `index`'s data directory onto a fresh faulty file system (as moveToTmpfs does).
 * Unmount it (`fs.unmount()`) after the node has stopped; at the latest it goes when this
 * process exits.
 */
export async function moveToFaultyFs(cluster: TestCluster, index: number): Promise<FaultyDisk> {
  const fs = await mountFaultyFs();
  if (typeof fs === "string") throw new Error(`moveToFaultyFs: ${fs}`);
  try {
    // (The copy syncs nothing: synced here, so that a power loss does not take it.)
    await moveDataDir(cluster, index, fs.dir, () => fs.syncAll());
  } catch (err) {
    await fs.unmount();
    throw err;
  }
  return { node: index, fs };
}

export interface NemesisOptions {
  readonly cluster: TestCluster;
  readonly phase: string;
  /** The phase's `--mem-db` voters lose their memory on a restart. */
  readonly memDb: boolean;
  readonly disk: TmpfsDisk | undefined;
  readonly faultyDisk: FaultyDisk | undefined;
  /** Aborted when the phase's fault time is over: lanes stop and heal what they hold. */
  readonly signal: AbortSignal;
  /** A progress or note line. */
  readonly print: (line: string) => void;
  /** A violation found while injecting (e.g. a node that did not come back). */
  readonly violation: (text: string) => void;
}

export interface Nemesis {
  /** Faults injected so far, in start order. */
  readonly injected: readonly InjectedFault[];
  /** Descriptions of the faults in force right now. */
  readonly active: ReadonlySet<string>;
  /** Nodes SIGKILLed by the nemesis and not restarted yet. */
  readonly killed: ReadonlySet<number>;
  /** Runs both lanes until the signal aborts; every fault is healed when this resolves. */
  run(lanes: { process: readonly PlannedFault[]; network: readonly PlannedFault[] }): Promise<void>;
  /** Ends every fault there may be: links, kernel rules, pauses, the full disk, killed nodes. */
  healAll(): Promise<void>;
}

/** Sleeps `ms`, or less when the signal aborts. */
async function hold(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}

export function createNemesis(options: NemesisOptions): Nemesis {
  const { cluster, signal, print } = options;
  const n = cluster.nodes.length;
  const injected: InjectedFault[] = [];
  const active = new Set<string>();
  const killed = new Set<number>();
  const paused = new Set<number>();
  let startedAt = performance.now();
  const kernelOn = (() => {
    try {
      return cluster.kernel.faults !== undefined;
    } catch {
      return false;
    }
  })();

  const resolveNode = async (f: PlannedFault): Promise<{ node: number; note: string }> => {
    if (f.node !== "leader") return { node: f.node, note: "" };
    try {
      return {
        node: await cluster.leader({ timeoutMs: LEADER_LOOKUP_TIMEOUT_MS }),
        note: "leader",
      };
    } catch {
      const node = f.peer % n;
      return { node, note: "no single leader: a node instead" };
    }
  };

  const restart = async (index: number): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await cluster.restart(index);
        killed.delete(index);
        return;
      } catch (err) {
        const message = (err as Error).message.split("\n")[0];
        if (attempt >= 3) {
          options.violation(
            `node ${index} did not start again after SIGKILL (3 attempts): ${message}`,
          );
          return;
        }
        print(`chaos[${options.phase}]: node ${index} did not start again (${message}); retrying`);
      }
    }
  };

  /**
   * Node `index`, just restarted, is a Follower (or Leader, or again a ReadOnlyReplica) again;
   * a violation otherwise.
   */
  const awaitRecovered = async (index: number, why: string): Promise<void> => {
    try {
      await waitFor(
        async () => {
          const state = await cluster.stateOf(index);
          return state === "Follower" || state === "Leader" || state === "ReadOnlyReplica";
        },
        {
          timeoutMs: MEMDB_RECOVERY_TIMEOUT_MS,
          intervalMs: 100,
          message: `node ${index} a Follower again`,
        },
      );
    } catch {
      options.violation(
        `node ${index} was not a Follower (or Leader) within ${MEMDB_RECOVERY_TIMEOUT_MS} ms of its restart ${why} ` +
          `(last state ${await cluster.stateOf(index)})`,
      );
    }
  };

  /**
   * A node whose disk failed a write stops taking part and asks for a restart (/health/live
   * answers 503): restarts it, as its supervisor would, and waits until it follows again.
   * Returns whether it did.
   */
  const restartIfAsked = async (index: number): Promise<boolean> => {
    const target = cluster.nodes[index];
    if (target === undefined || !target.running || killed.has(index)) return false;
    const live = await getJson(`http://${target.httpEndpoint}/health/live`, 2_000).catch(
      () => undefined,
    );
    if (live?.status !== 503) return false;
    killed.add(index);
    await cluster.kill(index);
    await restart(index);
    await awaitRecovered(index, "after its disk failed");
    return true;
  };

  /** Runs one fault: inject, hold, heal. Returns what was done. */
  const inject = async (f: PlannedFault): Promise<void> => {
    const { node, note } = await resolveNode(f);
    const peer = peerOf(f, node, n);
    const pair = f.kind === "kernel-partition" || f.kind.endsWith("one-way");
    const record: InjectedFault = {
      kind: f.kind,
      atMs: performance.now() - startedAt,
      durationMs: 0,
      nodes:
        f.kind === "disk-full" && options.disk !== undefined
          ? [options.disk.node]
          : (f.kind === "disk-eio" || f.kind === "power-loss") && options.faultyDisk !== undefined
            ? [options.faultyDisk.node]
            : pair
              ? [node, peer]
              : [node],
      note: [
        note,
        f.kind.startsWith("kernel-") ? f.mode : "",
        f.kind === "kernel-isolate" && f.clients ? "clients too" : "",
        f.kind === "disk-eio" ? (f.writesToo ? "writes and syncs" : "syncs") : "",
      ]
        .filter((s) => s !== "")
        .join(", "),
    };
    injected.push(record);
    const label = `${f.kind}(${record.nodes.join("&")})`;
    active.add(label);
    const began = performance.now();
    try {
      switch (f.kind) {
        case "kill-leader":
        case "kill-node":
        case "memdb-restart-leader":
        case "memdb-restart-node": {
          paused.delete(node);
          killed.add(node);
          await cluster.kill(node);
          await hold(f.durationMs, signal);
          await restart(node);
          if (options.memDb) await awaitRecovered(node, "with --mem-db");
          break;
        }
        case "pause-leader":
        case "pause-node": {
          const target = cluster.nodes[node]!;
          if (!target.running) break;
          paused.add(node);
          target.pause();
          try {
            await hold(f.durationMs, signal);
          } finally {
            target.resume();
            paused.delete(node);
          }
          break;
        }
        case "disk-full": {
          const disk = options.disk;
          if (disk === undefined) break;
          try {
            await disk.fill();
            await hold(f.durationMs, signal);
          } finally {
            await disk.free();
          }
          break;
        }
        case "disk-eio": {
          const faulty = options.faultyDisk;
          if (faulty === undefined) break;
          await faulty.fs.fail(f.writesToo ? ["write", "fsync"] : ["fsync"]);
          try {
            await hold(f.durationMs, signal);
          } finally {
            await faulty.fs.heal();
          }
          if (await restartIfAsked(faulty.node)) record.note += ", restarted";
          break;
        }
        case "power-loss": {
          // The node's machine loses power: it dies, and its disk loses what was not durable.
          const faulty = options.faultyDisk;
          if (faulty === undefined || !cluster.nodes[faulty.node]?.running) break;
          paused.delete(faulty.node);
          killed.add(faulty.node);
          // Torn: the disk had written part of what was not durable (from the schedule's time).
          const lost = await faulty.fs.powerLoss({
            stop: () => cluster.kill(faulty.node),
            torn: { seed: Math.floor(f.atMs) },
          });
          record.note = [
            record.note,
            `lost ${lost.writes} writes to ${lost.files} files (${lost.keptPages} pages kept), ` +
              `${lost.directoryOps} directory ops`,
          ]
            .filter((s) => s !== "")
            .join(", ");
          await hold(f.durationMs, signal);
          await restart(faulty.node);
          break;
        }
        case "disk-stall-leader":
        case "disk-stall-node": {
          // The nodes run with CHORUS_TEST_SYNC_STALL=1 (runPhase): while this file holds N,
          // each log sync of the node takes N ms longer (server storage/sync-stall.ts).
          const dir = cluster.nodes[node]!.dataDir;
          if (dir === undefined) break;
          const file = join(dir, "sync-stall-ms");
          await writeFile(file, String(f.durationMs));
          try {
            await hold(f.durationMs, signal);
          } finally {
            await rm(file, { force: true });
          }
          break;
        }
        case "proxy-blackhole": {
          cluster.partition(
            [node],
            Array.from({ length: n }, (_, i) => i).filter((i) => i !== node),
          );
          try {
            await hold(f.durationMs, signal);
          } finally {
            cluster.heal();
          }
          break;
        }
        case "proxy-one-way": {
          // What `node` sends to `peer` is lost, on the connections of either side.
          const out = cluster.link(node, peer);
          const back = cluster.link(peer, node);
          for (const p of [out.tcp, out.http]) p.dropUpstream();
          for (const p of [back.tcp, back.http]) p.dropDownstream();
          try {
            await hold(f.durationMs, signal);
          } finally {
            cluster.heal();
            // The byte streams have gaps now: those connections are done for.
            for (const p of [out.tcp, out.http, back.tcp, back.http]) p.resetAll();
          }
          break;
        }
        case "proxy-slow": {
          // Every link to and from `node` is slow (a far region, a congested network), in
          // both directions, with jitter; order is kept.
          const links = [];
          for (let o = 0; o < n; o++) {
            if (o !== node) links.push(cluster.link(node, o), cluster.link(o, node));
          }
          for (const link of links) {
            for (const p of [link.tcp, link.http])
              p.latency({ delayMs: f.delayMs, jitterMs: f.delayMs / 2 });
          }
          record.note = [record.note, `${f.delayMs} ms +50% jitter`]
            .filter((s) => s !== "")
            .join(", ");
          try {
            await hold(f.durationMs, signal);
          } finally {
            cluster.heal();
          }
          break;
        }
        case "proxy-reset": {
          for (let o = 0; o < n; o++) {
            if (o === node) continue;
            for (const link of [cluster.link(node, o), cluster.link(o, node)]) {
              link.tcp.resetAll();
              link.http.resetAll();
            }
          }
          break;
        }
        case "kernel-partition":
        case "kernel-isolate":
        case "kernel-one-way": {
          if (!kernelOn) break;
          const mode = { mode: f.mode };
          if (f.kind === "kernel-partition") await cluster.kernel.partition(node, peer, mode);
          else if (f.kind === "kernel-one-way") await cluster.kernel.dropFrom(node, peer, mode);
          else await cluster.kernel.isolate(node, { ...mode, clients: f.clients });
          try {
            await hold(f.durationMs, signal);
          } finally {
            await cluster.kernel.heal();
          }
          break;
        }
      }
    } finally {
      record.durationMs = performance.now() - began;
      active.delete(label);
    }
  };

  const runLane = async (faults: readonly PlannedFault[]): Promise<void> => {
    for (const f of faults) {
      const waitMs = startedAt + f.atMs - performance.now();
      await hold(waitMs, signal);
      if (signal.aborted) return;
      await inject(f);
    }
  };

  return {
    injected,
    active,
    killed,
    async run(lanes) {
      startedAt = performance.now();
      await Promise.all([runLane(lanes.process), runLane(lanes.network)]);
    },
    async healAll() {
      cluster.heal();
      if (kernelOn) await cluster.kernel.heal();
      for (const i of paused) cluster.nodes[i]?.resume();
      paused.clear();
      await options.disk?.free();
      for (const i of [...killed]) await restart(i);
      if (options.faultyDisk !== undefined) {
        await options.faultyDisk.fs.heal();
        await restartIfAsked(options.faultyDisk.node);
      }
    },
  };
}
