/**
 * The `read-all-filtered` row: the `read-all` data set (events spread over the 10,000 streams
 * `fill-0` .. `fill-9999`) read through a server-side stream-name regex that matches 1% of the
 * streams, so the node scans every event and sends one in a hundred. Measured twice, each the
 * median of 3 runs: a filtered `readAll` (`ops_per_s`) and a filtered catch-up subscription
 * until it is caught up (`catch_up_ops_per_s`), both as events scanned per second.
 */
import type { ChorusClient } from "@chorus/client";
import { performance } from "node:perf_hooks";
import { round } from "./stats.js";

/** `fill-42`, `fill-142`, ..., `fill-9942`: 100 of the 10,000 streams. */
export const FILTERED_STREAM_REGEX = "^fill-\\d*42$";

export interface ReadAllFilteredRow {
  test: "read-all-filtered";
  /** Events scanned per run (the events in $all). */
  n: number;
  matched: number;
  regex: string;
  ops_per_s: number;
  runs: number[];
  catch_up_ops_per_s: number;
  catch_up_runs: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Matching events of one filtered catch-up subscription from the start until caught up. */
async function catchUp(client: ChorusClient): Promise<number> {
  const sub = client.subscribeToAll({
    fromPosition: "start",
    filter: { streamNameRegex: FILTERED_STREAM_REGEX },
    bufferSize: 4096,
  });
  let matched = 0;
  let caughtUp = false;
  sub.once("caughtUp", () => {
    caughtUp = true;
    void sub.unsubscribe();
  });
  for await (const _ of sub) {
    matched++;
    if (caughtUp) break;
  }
  if (!caughtUp) throw new Error("the filtered subscription ended before it caught up");
  return matched;
}

/** Runs the row over `n` events already in $all (the `read-all` data set). */
export async function readAllFiltered(
  client: ChorusClient,
  n: number,
): Promise<ReadAllFilteredRow> {
  const runs: number[] = [];
  const catchUpRuns: number[] = [];
  let matched = 0;
  for (let r = 0; r < 3; r++) {
    let start = performance.now();
    matched = 0;
    for await (const _ of client.readAll({
      direction: "forwards",
      fromPosition: "start",
      filter: { streamNameRegex: FILTERED_STREAM_REGEX },
    }))
      matched++;
    runs.push(n / ((performance.now() - start) / 1000));
    start = performance.now();
    const viaSubscription = await catchUp(client);
    catchUpRuns.push(n / ((performance.now() - start) / 1000));
    if (matched === 0)
      throw new Error(
        `read-all-filtered: no event of $all is in a stream ${FILTERED_STREAM_REGEX} matches`,
      );
    if (viaSubscription !== matched) {
      throw new Error(`the read matched ${matched} events, the subscription ${viaSubscription}`);
    }
  }
  return {
    test: "read-all-filtered",
    n,
    matched,
    regex: FILTERED_STREAM_REGEX,
    ops_per_s: round(median(runs)),
    runs: runs.map((v) => round(v)),
    catch_up_ops_per_s: round(median(catchUpRuns)),
    catch_up_runs: catchUpRuns.map((v) => round(v)),
  };
}
