/**
 * JetStream (`"peer": "jetstream"`): nats-server with JetStream, one server (R1) or a
 * three-server cluster (R3); one stream `BENCH` on file storage over the subjects `bench.>`;
 * an append is `js.publish("bench.<stream>", data)` awaited for its PubAck (the `nats`
 * client). nats-server 2.9 syncs its files to disk on its own interval (2 minutes), not per
 * message: a PubAck means the message is in the memory of a majority of servers.
 */
import { freePorts, waitFor } from "@chorus/testing";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, StorageType, type JetStreamClient, type NatsConnection } from "nats";
import type { Peer, PeerSession } from "./runner.js";
import {
  findBinary,
  serverDir,
  startServer,
  stopAll,
  waitReady,
  type ServerProcess,
} from "./server.js";

const BINARY = "nats-server";
const READY_TIMEOUT_MS = 10_000;
/** Deadline of the stream's creation (an R3 stream needs a JetStream meta leader first). */
const STREAM_TIMEOUT_MS = 30_000;
/** Deadline of each publish's PubAck. */
const PUBLISH_TIMEOUT_MS = 30_000;

export const jetstream: Peer = {
  name: "jetstream",
  missing: () =>
    findBinary(BINARY) === undefined
      ? `no ${BINARY} on PATH or in /usr/sbin, /usr/bin, /sbin (Debian: apt-get install nats-server)`
      : undefined,
  async start(nodes) {
    const binary = findBinary(BINARY)!;
    const ports = await freePorts(3 * nodes);
    const client = (i: number) => ports[3 * i]!;
    const monitor = (i: number) => ports[3 * i + 1]!;
    const route = (i: number) => ports[3 * i + 2]!;
    const servers: ServerProcess[] = [];
    try {
      for (let i = 0; i < nodes; i++) {
        const dir = await serverDir("nats");
        const conf = join(dir, "nats.conf");
        const cluster =
          nodes === 1
            ? ""
            : `cluster {\n  name: bench\n  listen: 127.0.0.1:${route(i)}\n  routes: [${Array.from(
                { length: nodes },
                (_, k) => `nats-route://127.0.0.1:${route(k)}`,
              ).join(", ")}]\n}\n`;
        await writeFile(
          conf,
          `server_name: n${i}\nlisten: 127.0.0.1:${client(i)}\nhttp: 127.0.0.1:${monitor(i)}\n` +
            `jetstream {\n  store_dir: "${join(dir, "js")}"\n}\n${cluster}`,
        );
        servers.push(
          await startServer({
            label: `nats-server ${i}`,
            command: binary,
            args: ["-c", conf],
            dir,
          }),
        );
      }
      await waitReady(
        servers,
        async (i) => (await fetch(`http://127.0.0.1:${monitor(i)}/healthz`)).ok,
        READY_TIMEOUT_MS,
        "answering /healthz",
      );
    } catch (err) {
      await stopAll(servers);
      throw err;
    }
    let nc: NatsConnection | undefined;
    const urls = servers.map((_, i) => `127.0.0.1:${client(i)}`);
    try {
      nc = await connect({ servers: urls, timeout: READY_TIMEOUT_MS });
      const jsm = await nc.jetstreamManager({ timeout: PUBLISH_TIMEOUT_MS });
      const info = await waitFor(
        async () =>
          jsm.streams.add({
            name: "BENCH",
            subjects: ["bench.>"],
            storage: StorageType.File,
            num_replicas: nodes,
          }),
        {
          timeoutMs: STREAM_TIMEOUT_MS,
          intervalMs: 100,
          message: `JetStream stream BENCH (R${nodes}) created`,
        },
      );
      // Connected to the stream's leader, as Chorus's client writes to its leader (another
      // server would forward each publish).
      const leader = Number(/^n(\d+)$/.exec(info.cluster?.leader ?? "")?.[1] ?? 0);
      await nc.close();
      nc = await connect({
        servers: [urls[leader]!, ...urls.filter((_, i) => i !== leader)],
        noRandomize: true,
        timeout: READY_TIMEOUT_MS,
      });
    } catch (err) {
      await nc?.close().catch(() => undefined);
      await stopAll(servers);
      throw err;
    }
    const js: JetStreamClient = nc.jetstream({ timeout: PUBLISH_TIMEOUT_MS });
    const connection = nc;
    const session: PeerSession = {
      tags: { replicas: nodes, storage: "file", sync: "interval" },
      async append(stream, event) {
        await js.publish(`bench.${stream}`, event.data);
      },
      servers: () => servers.map((s) => [s.pid]),
      async stop() {
        try {
          await connection.close();
        } finally {
          await stopAll(servers);
        }
      },
    };
    return session;
  },
};
