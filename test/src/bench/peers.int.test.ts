/**
 * The peer rows of `npm run bench -- --peers` (peers/runner.ts) at tiny sizes: every
 * installed peer gives both rows with the fields README.md names, for one and three nodes.
 */
import { describe, expect, it } from "vitest";
import { PEERS, PEER_ROWS, runPeers } from "./peers/runner.js";

const TINY = { seq: 50, seqWarm: 5, pipelined: 600, pipelinedWarm: 256 };

describe("bench --peers", () => {
  for (const nodes of [1, 3] as const) {
    it(`gives both rows of every installed peer with ${nodes} node(s)`, async () => {
      const rows: Record<string, unknown>[] = [];
      await runPeers({
        nodes,
        quick: true,
        counts: TINY,
        only: () => true,
        // As main.ts prints them: one JSON line per row.
        emit: (row) => rows.push(JSON.parse(JSON.stringify(row)) as Record<string, unknown>),
      });
      const installed = PEERS.filter((peer) => peer.missing() === undefined).map((p) => p.name);
      expect(rows.map((row) => `${String(row.peer)} ${String(row.test)}`)).toEqual(
        installed.flatMap((peer) => PEER_ROWS.map((test) => `${peer} ${test}`)),
      );
      for (const row of rows) {
        expect(row.nodes).toBe(nodes);
        expect(row.n).toBe(row.test === "append-seq" ? TINY.seq : TINY.pipelined);
        for (const field of ["ops_per_s", "p50_ms", "p99_ms"]) {
          expect(row[field], `${String(row.peer)} ${String(row.test)} ${field}`).toBeGreaterThan(0);
        }
        for (const field of ["client_cpu_us", "server_cpu_us"]) {
          expect(typeof row[field], `${String(row.peer)} ${String(row.test)} ${field}`).toBe(
            "number",
          );
        }
      }
    }, 240_000);
  }
});
