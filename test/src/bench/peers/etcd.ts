/**
 * etcd (`"peer": "etcd"`): etcd 3 as one member or a static three-member cluster; an append
 * is a put of a new key `<stream>/<k>` (k counts up) holding the event's data, awaited.
 * etcd fsyncs its write-ahead log before it answers a put (the default, kept), on a majority
 * of members. Puts go through etcd's HTTP/JSON gateway (`POST /v3/kv/put`) over a pool of 32
 * keep-alive connections to the leader: the Node gRPC client (`etcd3`) spent ~400 µs
 * of client CPU per put, which capped the row on a small machine (README.md, "Peers").
 */
import { freePorts, waitFor } from "@chorus/testing";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Pool } from "undici";
import type { Peer, PeerSession } from "./runner.js";
import {
  findBinary,
  serverDir,
  startServer,
  stopAll,
  stopInOrder,
  waitReady,
  type ServerProcess,
} from "./server.js";

const BINARY = "etcd";
const READY_TIMEOUT_MS = 10_000;
/** Keep-alive connections of the client (as the postgres peer's pool). */
const CONNECTIONS = 32;
/** Deadline of each put's answer. */
const PUT_TIMEOUT_MS = 30_000;

export const etcd: Peer = {
  name: "etcd",
  missing: () =>
    findBinary(BINARY) === undefined
      ? `no ${BINARY} on PATH or in /usr/sbin, /usr/bin, /sbin (Debian: apt-get install etcd-server)`
      : undefined,
  async start(nodes) {
    const binary = findBinary(BINARY)!;
    const ports = await freePorts(2 * nodes);
    const clientUrl = (i: number) => `http://127.0.0.1:${ports[2 * i]!}`;
    const peerUrl = (i: number) => `http://127.0.0.1:${ports[2 * i + 1]!}`;
    const initialCluster = Array.from({ length: nodes }, (_, i) => `e${i}=${peerUrl(i)}`).join(",");
    const token = `bench-${randomBytes(4).toString("hex")}`;
    const servers: ServerProcess[] = [];
    try {
      for (let i = 0; i < nodes; i++) {
        const dir = await serverDir("etcd");
        servers.push(
          await startServer({
            label: `etcd ${i}`,
            command: binary,
            args: [
              `--name=e${i}`,
              `--data-dir=${join(dir, "data")}`,
              `--listen-client-urls=${clientUrl(i)}`,
              `--advertise-client-urls=${clientUrl(i)}`,
              `--listen-peer-urls=${peerUrl(i)}`,
              `--initial-advertise-peer-urls=${peerUrl(i)}`,
              `--initial-cluster=${initialCluster}`,
              "--initial-cluster-state=new",
              `--initial-cluster-token=${token}`,
              "--logger=zap",
              "--log-outputs=stderr",
            ],
            dir,
          }),
        );
      }
      // /health says true once the member sees a leader and can serve a linearizable read.
      await waitReady(
        servers,
        async (i) => {
          const res = await fetch(`${clientUrl(i)}/health`);
          return res.ok && ((await res.json()) as { health?: string }).health === "true";
        },
        READY_TIMEOUT_MS,
        "answering /health",
      );
    } catch (err) {
      await stopAll(servers);
      throw err;
    }
    // The leader, as Chorus's client writes to its leader (a follower would forward each put).
    const leader = await leaderOf(servers.map((_, i) => clientUrl(i))).catch(async (err) => {
      await stopAll(servers);
      throw err;
    });
    const client = new Pool(leader, {
      connections: CONNECTIONS,
      headersTimeout: PUT_TIMEOUT_MS,
      bodyTimeout: PUT_TIMEOUT_MS,
    });
    let key = 0;
    const session: PeerSession = {
      tags: { fsync: "per-write", api: "http-gateway", connections: CONNECTIONS },
      async append(stream, event) {
        const data = Buffer.from(event.data.buffer, event.data.byteOffset, event.data.byteLength);
        const body = JSON.stringify({
          key: Buffer.from(`${stream}/${key++}`).toString("base64"),
          value: data.toString("base64"),
        });
        const res = await client.request({
          path: "/v3/kv/put",
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        if (res.statusCode !== 200)
          throw new Error(`etcd put: HTTP ${res.statusCode}: ${await res.body.text()}`);
        await res.body.dump();
      },
      servers: () => servers.map((s) => [s.pid]),
      async stop() {
        try {
          await client.close();
        } finally {
          // One member at a time, the leader last: stopped all at once, members wait ~7 s
          // for each other before they exit.
          const last = servers.findIndex((_, i) => clientUrl(i) === leader);
          await stopInOrder([...servers.filter((_, i) => i !== last), servers[last]!]);
        }
      },
    };
    return session;
  },
};

/** The client URL of the member that is the leader, as /v3/maintenance/status tells. */
async function leaderOf(urls: readonly string[]): Promise<string> {
  const status = async (url: string) => {
    const res = await fetch(`${url}/v3/maintenance/status`, { method: "POST", body: "{}" });
    if (!res.ok) throw new Error(`etcd status at ${url}: HTTP ${res.status}`);
    return (await res.json()) as { header?: { member_id?: string }; leader?: string };
  };
  return waitFor(
    async () => {
      for (const url of urls) {
        const s = await status(url);
        if (s.leader !== undefined && s.leader !== "0" && s.header?.member_id === s.leader)
          return url;
      }
      return undefined;
    },
    { timeoutMs: READY_TIMEOUT_MS, intervalMs: 50, message: "an etcd member that is the leader" },
  );
}
