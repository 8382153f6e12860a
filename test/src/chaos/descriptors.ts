// Open file descriptors of a process (Linux /proc/<pid>/fd), by kind: the soak's check that
// faults leak no sockets or files, in the nodes (a connection per fault, kept forever, ends
// in EMFILE) or in its own process (the clients and the link proxies).
import { readdir, readFile, readlink } from "node:fs/promises";
import { Socket } from "node:net";

export interface Descriptors {
  readonly total: number;
  readonly sockets: number;
  /** Paths: the log's segments, the index, anything opened by name. */
  readonly files: number;
  /** Pipes, eventfds, epoll and other anonymous inodes. */
  readonly other: number;
}

/** The open descriptors of `pid`; undefined when the process is gone. */
export async function descriptorsOf(pid: number): Promise<Descriptors | undefined> {
  let entries: string[];
  try {
    entries = await readdir(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  let sockets = 0;
  let files = 0;
  let other = 0;
  for (const fd of entries) {
    // A descriptor closed between the listing and this read counts as nothing.
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
    if (target === undefined) continue;
    if (target.startsWith("socket:")) sockets++;
    else if (target.startsWith("/")) files++;
    else other++;
  }
  return { total: sockets + files + other, sockets, files, other };
}

/**
 * `pid:start`, with the process's start time (field 22 of /proc/<pid>/stat, in clock ticks
 * since boot): one process, even once its pid is reused by another; undefined when it is gone.
 */
export async function processKeyOf(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces: count after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return `${pid}:${fields[19]}`;
}

/** e.g. `41 (sockets 12, files 20, other 9)`. */
export function describeDescriptors(d: Descriptors): string {
  return `${d.total} (sockets ${d.sockets}, files ${d.files}, other ${d.other})`;
}

const TCP_STATES: Record<string, string> = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
};

/** `0100007F:1F90` (/proc/net/tcp, little-endian IPv4) -> `127.0.0.1:8080`. */
function tcpAddress(hex: string): string {
  const [ip = "", port = ""] = hex.split(":");
  if (ip.length !== 8) return hex; // IPv6: left as the kernel writes it
  const bytes = [6, 4, 2, 0].map((i) => parseInt(ip.slice(i, i + 2), 16));
  return `${bytes.join(".")}:${parseInt(port, 16)}`;
}

/**
 * The TCP sockets `pid` holds open, e.g. `127.0.0.1:40112 -> 127.0.0.3:2113 ESTABLISHED`
 * (others as `socket:[inode]`): what a leak report names.
 */
export async function openSockets(pid: number): Promise<string[]> {
  const inodes: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined) inodes.push(inode);
  }
  const byInode = new Map<string, string>();
  for (const table of ["tcp", "tcp6"]) {
    const text = await readFile(`/proc/${pid}/net/${table}`, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, remote, state, inode] = [f[1], f[2], f[3], f[9]];
      if (local === undefined || remote === undefined || inode === undefined) continue;
      byInode.set(
        inode,
        `${tcpAddress(local)} -> ${tcpAddress(remote)} ${TCP_STATES[state ?? ""] ?? state}`,
      );
    }
  }
  const unix = await readFile(`/proc/${pid}/net/unix`, "utf8").catch(() => "");
  for (const line of unix.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const inode = f[6];
    if (inode !== undefined && !byInode.has(inode))
      byInode.set(inode, `unix ${f[7] ?? "(unnamed)"}`);
  }
  return inodes.map((inode) => byInode.get(inode) ?? `socket:[${inode}]`);
}

/** The processes whose parent is `pid`, e.g. `1234 node chorus-server.js ...`. */
export async function childProcesses(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir("/proc").catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const status = await readFile(`/proc/${entry}/status`, "utf8").catch(() => "");
    if (/^PPid:\s+(\d+)$/m.exec(status)?.[1] !== String(pid)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    out.push(`${entry} ${cmd.split("\0").join(" ").trim().slice(0, 120)}`);
  }
  return out;
}

/**
 * This process's open sockets as Node holds them (its internal, undocumented handle list: for a
 * leak report only): addresses, state and the names of the functions listening for "data" and
 * "close", which name their owner.
 */
export function socketHandles(): string[] {
  const handles =
    (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  return handles
    .filter((h): h is Socket => h instanceof Socket)
    .map((s) => {
      const names = (event: string) =>
        s
          .listeners(event)
          .map((f) => (f as { name?: string }).name || "anonymous")
          .join("/");
      return (
        `${s.localAddress ?? "?"}:${s.localPort ?? "?"} -> ${s.remoteAddress ?? "?"}:${s.remotePort ?? "?"} ` +
        `destroyed=${s.destroyed} readyState=${s.readyState} data=[${names("data")}] close=[${names("close")}] end=[${names("end")}]`
      );
    });
}
