import { ChorusClient } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { main, type Attempt } from "./persistent-worker-pool.js";

let node: TestNode;
beforeAll(async () => {
  node = await startNode({ memDb: true });
});
afterAll(async () => {
  await node?.stop();
});

/** Jobs 17, 57 and 97 always fail; 3, 13, ..., 93 fail once (see makeJob). */
const POISON = [17, 57, 97];
const FLAKY = Array.from({ length: 10 }, (_, i) => i * 10 + 3);

it("the worker pool finishes every job once: retried jobs succeed, poison jobs are parked, acks are durable", async () => {
  const lines: string[] = [];
  const summary = await main({
    connectionString: node.connectionString,
    stream: "jobs-a",
    group: "pool",
    workers: 3,
    bufferSize: 5,
    jobs: 100,
    retryLimit: 3,
    log: (line) => lines.push(line),
  });

  const byJob = new Map<number, Attempt[]>();
  for (const a of summary.attempts) byJob.set(a.n, [...(byJob.get(a.n) ?? []), a]);
  expect([...byJob.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, n) => n));
  for (const [n, attempts] of byJob) {
    // Each delivery carries the next retryCount: no job was handed to two workers at once,
    // and none came back after it was finished.
    expect(attempts.map((a) => a.retryCount)).toEqual(attempts.map((_, i) => i));
    const outcomes = attempts.map((a) => a.outcome);
    if (POISON.includes(n)) expect(outcomes).toEqual(["retry", "retry", "retry", "parked"]);
    else if (FLAKY.includes(n)) expect(outcomes).toEqual(["retry", "acked"]);
    else expect(outcomes).toEqual(["acked"]);
  }
  expect(summary.parked).toBe(3);
  expect(summary.retried).toBe(FLAKY.length + 3 * POISON.length);
  // The work was shared out.
  expect(Object.keys(summary.acked).sort()).toEqual(["worker-1", "worker-2", "worker-3"]);
  expect(Object.values(summary.acked).reduce((a, b) => a + b, 0)).toBe(97);
  expect(lines).toContain(`created group "pool" on "jobs-a"`);
  expect(lines.filter((l) => l.endsWith(": joined the group"))).toHaveLength(3);
  expect(lines.at(-1)).toMatch(/^done: finished 100 jobs .*retried 19, parked 3$/);

  const client = new ChorusClient(node.connectionString);
  try {
    const info = await client.persistentSubscriptions.getInfo("jobs-a", "pool");
    expect(info).toMatchObject({ totalAcked: 97, totalParked: 3, parkedCount: 3, inFlight: 0 });
    expect(info.consumers).toHaveLength(0);
  } finally {
    await client.close();
  }

  // Run again with one new job: the group exists, and the only job handed out is the new
  // one (revision 100): every earlier job was acknowledged or parked durably.
  const again = await main({
    connectionString: node.connectionString,
    stream: "jobs-a",
    group: "pool",
    jobs: 1,
    log: (line) => lines.push(line),
  });
  expect(lines).toContain(`group "pool" on "jobs-a" exists already`);
  expect(again.attempts.map((a) => [a.revision, a.outcome])).toEqual([[100, "acked"]]);
});

it("the worker pool stops on its signal, leaving unfinished jobs to the group", async () => {
  const controller = new AbortController();
  const handled: number[] = [];
  const summary = await main({
    connectionString: node.connectionString,
    stream: "jobs-b",
    group: "pool",
    workers: 2,
    bufferSize: 2,
    jobs: 50,
    handle: async (job) => {
      handled.push(job.n);
      if (handled.length === 10) controller.abort();
    },
    signal: controller.signal,
  });
  // A worker in the middle of a job finishes it; nothing more is taken after the abort.
  expect(summary.attempts.length).toBeGreaterThanOrEqual(10);
  expect(summary.attempts.length).toBeLessThan(50);
  expect(summary.attempts.every((a) => a.outcome === "acked")).toBe(true);

  // The rest is still there for the next pool, none of the finished jobs again.
  const done = new Set(summary.attempts.map((a) => a.n));
  const rest = await main({
    connectionString: node.connectionString,
    stream: "jobs-b",
    group: "pool",
    jobs: 0,
    stopAfter: 50 - done.size,
    handle: async () => undefined,
  });
  const second = rest.attempts.map((a) => a.n);
  expect(second.filter((n) => done.has(n))).toEqual([]);
  expect([...done, ...second].sort((a, b) => a - b)).toEqual(
    Array.from({ length: 50 }, (_, n) => n),
  );
});
