// The operation retry loop (p-retry underneath) on injected timers and randomness: every
// wait and every deadline here happens only when the test moves the clock.
import { describe, expect, it } from "vitest";
import type { Connection, Session } from "../connection/connection.js";
import {
  ClientClosedError,
  ConnectionError,
  NotHandledError,
  NotLeaderError,
  TimeoutError,
  WrongExpectedVersionError,
  type LeaderEndpoints,
} from "../errors.js";
import {
  ConnectionSettings,
  type ConnectionSettingsBuilder,
} from "../settings/connection-settings.js";
import type { TimerHandle, Timers } from "../types.js";
import type { Transport } from "../transport/transport.js";
import type { OperationContext } from "./context.js";
import { withRetry } from "./retry.js";
import { RetryBudget, UNLIMITED_RETRY_BUDGET } from "./retry-budget.js";

/** A clock that moves only when told to; records the delay of every timer set. */
function manualTimers(): Timers & {
  delays: number[];
  pending(): number;
  advance(ms: number): Promise<void>;
} {
  let now = 0;
  let nextId = 1;
  const due = new Map<number, { at: number; fn: () => void }>();
  const delays: number[] = [];
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      due.set(id, { at: now + ms, fn });
      delays.push(ms);
      return id;
    },
    clearTimeout(handle: TimerHandle) {
      due.delete(handle as number);
    },
    delays,
    pending: () => due.size,
    async advance(ms) {
      const until = now + ms;
      await settle();
      for (;;) {
        const next = [...due.entries()]
          .filter(([, t]) => t.at <= until)
          .sort((a, b) => a[1].at - b[1].at)[0];
        if (!next) break;
        due.delete(next[0]);
        now = next[1].at;
        next[1].fn();
        await settle();
      }
      now = until;
      await settle();
    },
  };
}

/** Lets every promise reaction already queued run (nothing here waits on real time). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const transport = { endpoint: { host: "127.0.0.1", port: 1113 } } as unknown as Transport;
const leaderSession: Session = {
  transport,
  node: { state: "Leader", instanceId: "a" } as Session["node"],
};

/** An operation context over a connection that always has `session` at hand. */
function context(
  configure: (b: ConnectionSettingsBuilder) => ConnectionSettingsBuilder = (b) => b,
  session: Session = leaderSession,
) {
  const timers = manualTimers();
  const settings = configure(
    ConnectionSettings.create()
      .withSingleNode("127.0.0.1:2113")
      .withTimers(timers)
      .withRandom(() => 0.5)
      .withReconnectionDelay(100),
  ).build();
  const retargets: Array<{ from: Transport; leader: LeaderEndpoints | undefined }> = [];
  const connection = {
    liveSession: () => session,
    session: () => Promise.resolve(session),
    retarget: (from: Transport, leader: LeaderEndpoints | undefined) =>
      retargets.push({ from, leader }),
  } as unknown as Connection;
  const ctx: OperationContext = {
    settings,
    connection,
    readConnection: connection,
    retryBudget: new RetryBudget(settings.retryBudget ?? UNLIMITED_RETRY_BUDGET, () =>
      settings.timers.now(),
    ),
  };
  return { ctx, timers, retargets };
}

/** Records the outcome of a promise without awaiting it. */
function watch<T>(p: Promise<T>) {
  const state: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  p.then(
    (value) => Object.assign(state, { value, settled: true }),
    (error: unknown) => Object.assign(state, { error, settled: true }),
  );
  return state;
}

const notReady = () => new NotHandledError("NOT_READY", "not ready");

describe("withRetry", () => {
  it("retries after the client's jittered backoff on the injected timers, then succeeds", async () => {
    const { ctx, timers } = context();
    let attempts = 0;
    const result = watch(
      withRetry(ctx, { name: "op", requireLeader: true }, async () => {
        attempts++;
        if (attempts <= 2) throw notReady();
        return "done";
      }),
    );
    await settle();
    expect(attempts).toBe(1);
    // the deadline (7 s), then backoff 1: 100 ms × (0.5 + 0.5 × 0.5)
    expect(timers.delays).toEqual([7_000, 75]);
    await timers.advance(74);
    expect(attempts).toBe(1);
    await timers.advance(1);
    expect(attempts).toBe(2);
    // backoff 2: 200 ms × 0.75
    expect(timers.delays).toEqual([7_000, 75, 150]);
    await timers.advance(149);
    expect(attempts).toBe(2);
    await timers.advance(1);
    expect(result).toEqual({ settled: true, value: "done" });
    expect(attempts).toBe(3);
    expect(timers.pending()).toBe(0);
  });

  it("rejects with TimeoutError when the deadline passes, the last failure as its cause", async () => {
    const { ctx, timers } = context();
    let attempts = 0;
    const result = watch(
      withRetry(ctx, { name: "appendToStream", requireLeader: true, timeoutMs: 1_000 }, () => {
        attempts++;
        return Promise.reject(notReady());
      }),
    );
    await timers.advance(999);
    expect(result.settled).toBe(false);
    await timers.advance(1);
    expect(result.settled).toBe(true);
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect((result.error as Error).message).toBe("appendToStream timed out after 1000 ms");
    expect((result.error as Error).cause).toBeInstanceOf(NotHandledError);
    expect(attempts).toBeGreaterThan(3);
    expect(timers.pending()).toBe(0);
  });

  it("fires the deadlines of operations in flight together each on time, on one timer", async () => {
    const { ctx, timers } = context();
    /** An attempt that never gets a reply: it ends when its signal aborts. */
    const hang = (
      _session: Session,
      signal: { addEventListener(t: "abort", l: () => void): void },
    ) =>
      new Promise<never>((_resolve, reject) =>
        signal.addEventListener("abort", () => reject(new ConnectionError("aborted"))),
      );
    const a = watch(withRetry(ctx, { name: "a", requireLeader: true, timeoutMs: 1_000 }, hang));
    await timers.advance(100);
    const b = watch(withRetry(ctx, { name: "b", requireLeader: true, timeoutMs: 300 }, hang));
    const c = watch(withRetry(ctx, { name: "c", requireLeader: true, timeoutMs: 2_000 }, hang));
    const d = watch(
      withRetry(ctx, { name: "d", requireLeader: true, timeoutMs: 2_000 }, async () => "done"),
    );
    await settle();
    expect(d).toEqual({ settled: true, value: "done" });
    expect(timers.pending()).toBe(1);
    await timers.advance(299);
    expect([a.settled, b.settled, c.settled]).toEqual([false, false, false]);
    await timers.advance(1);
    expect((b.error as Error).message).toBe("b timed out after 300 ms");
    expect([a.settled, c.settled]).toEqual([false, false]);
    await timers.advance(599);
    expect(a.settled).toBe(false);
    await timers.advance(1);
    expect((a.error as Error).message).toBe("a timed out after 1000 ms");
    expect(c.settled).toBe(false);
    expect(timers.pending()).toBe(1);
    await timers.advance(1_099);
    expect(c.settled).toBe(false);
    await timers.advance(1);
    expect(c.error).toBeInstanceOf(TimeoutError);
    expect(timers.pending()).toBe(0);
  });

  it("does not retry a failure that comes after the timeout on p-retry's clock (maxRetryTime)", async () => {
    // The injected clock never moves, so the deadline timer never fires: only p-retry's
    // maxRetryTime, on the monotonic clock, can stop the retries.
    const { ctx, timers } = context();
    let attempts = 0;
    const err = await withRetry(ctx, { name: "op", requireLeader: true, timeoutMs: 1 }, () => {
      attempts++;
      const until = performance.now() + 3;
      while (performance.now() < until); // this attempt takes 3 ms: past the 1 ms timeout
      return Promise.reject(notReady());
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toBe("op timed out after 1 ms");
    expect((err as Error).cause).toBeInstanceOf(NotHandledError);
    expect(attempts).toBe(1);
    expect(timers.pending()).toBe(0);
  });

  it.each([
    ["an Error", new Error("stop it")],
    ["a string", "stop it"],
  ])("rejects with the signal's reason (%s) when aborted during the backoff", async (_, reason) => {
    const { ctx, timers } = context();
    const controller = new AbortController();
    let attempts = 0;
    const result = watch(
      withRetry(ctx, { name: "op", requireLeader: true, signal: controller.signal }, () => {
        attempts++;
        return Promise.reject(notReady());
      }),
    );
    await settle();
    expect(timers.pending()).toBe(2); // the deadline and the backoff
    controller.abort(reason);
    await settle();
    expect(result).toEqual({ settled: true, error: reason });
    expect(attempts).toBe(1);
    expect(timers.pending()).toBe(0);
  });

  it("rejects with the signal's reason when aborted before it starts, without an attempt", async () => {
    const { ctx } = context();
    const reason = new Error("too late");
    let attempts = 0;
    const err = await withRetry(
      ctx,
      { name: "op", requireLeader: true, signal: AbortSignal.abort(reason) },
      async () => attempts++,
    ).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(attempts).toBe(0);
  });

  it("moves to the leader a NOT_LEADER names and retries there at once, without a backoff", async () => {
    const { ctx, timers, retargets } = context();
    const leader: LeaderEndpoints = { tcp: { host: "127.0.0.2", port: 1113 } };
    let attempts = 0;
    const result = watch(
      withRetry(ctx, { name: "op", requireLeader: true }, async () => {
        if (++attempts === 1) throw new NotLeaderError(leader);
        return "on the leader";
      }),
    );
    await settle();
    expect(result).toEqual({ settled: true, value: "on the leader" });
    expect(retargets).toEqual([{ from: transport, leader }]);
    expect(timers.delays).toEqual([7_000]); // no backoff timer
  });

  it("leaves a follower when the operation requires the leader, backing off before retrying", async () => {
    const follower: Session = { transport, node: { ...leaderSession.node, state: "Follower" } };
    const { ctx, timers, retargets } = context((b) => b, follower);
    let attempts = 0;
    const result = watch(
      withRetry(ctx, { name: "appendToStream", requireLeader: true }, async () => ++attempts),
    );
    await settle();
    expect(attempts).toBe(0);
    expect(retargets).toEqual([{ from: transport, leader: undefined }]);
    expect(timers.delays).toEqual([7_000, 75]);
    await timers.advance(7_000);
    expect((result.error as Error).message).toBe("appendToStream timed out after 7000 ms");
    expect(((result.error as Error).cause as Error).message).toBe(
      "appendToStream requires the leader; connected to a Follower",
    );
  });

  it("makes limitRetriesForOperationTo retries, then fails with the last error", async () => {
    const { ctx } = context((b) => b.limitRetriesForOperationTo(3));
    let attempts = 0;
    const errors: Error[] = [];
    const err = await withRetry(ctx, { name: "op", requireLeader: true }, () => {
      attempts++;
      // a lost connection is retried without a backoff: the next attempt waits for a session
      const e = new ConnectionError(`lost ${attempts}`);
      errors.push(e);
      return Promise.reject(e);
    }).catch((e: unknown) => e);
    expect(attempts).toBe(4);
    expect(err).toBe(errors[3]);
  });

  it.each([
    ["a wrong expected version", new WrongExpectedVersionError("s", 1n, 2n)],
    ["a closed client", new ClientClosedError()],
    ["a programming error", new TypeError("x is not a function")],
  ])("fails at once on %s, with that error", async (_, error) => {
    const { ctx } = context();
    let attempts = 0;
    const err = await withRetry(ctx, { name: "op", requireLeader: true }, () => {
      attempts++;
      return Promise.reject(error);
    }).catch((e: unknown) => e);
    expect(err).toBe(error);
    expect(attempts).toBe(1);
  });

  it("fails at once with the real error when the client's retry budget allows no retry", async () => {
    const { ctx, timers } = context((b) =>
      b.withRetryBudget({ ratio: 0.5, minRetriesPerSecond: 0, windowMs: 10_000 }),
    );
    let attempts = 0;
    const run = () => {
      let mine = 0;
      return withRetry(ctx, { name: "op", requireLeader: true }, async () => {
        attempts++;
        if (++mine === 1) throw notReady(); // every operation's first attempt fails
        return mine;
      });
    };
    // two operations earn one retry (ratio 0.5): the first is retried, the second is not
    const first = watch(run());
    const second = watch(run());
    await settle();
    await timers.advance(75);
    expect(first).toEqual({ settled: true, value: 2 });
    expect(second.error).toBeInstanceOf(NotHandledError);
    expect(attempts).toBe(3);
  });
});
