import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./embedded.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "chorus-embedded-example-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("two subdomains share an embedded durable store, and a second run finds the first run's events", async () => {
  const first: string[] = [];
  await run(join(dir, "data"), (line) => first.push(line));
  expect(first).toEqual([
    expect.stringMatching(/^placing order \S+-1 twice is refused: WrongExpectedVersionError$/),
    "orders to ship: 2 (events projected: 4)",
  ]);
  const second: string[] = [];
  await run(join(dir, "data"), (line) => second.push(line));
  // The node reopened the same directory: the projection rebuilds from both runs' events.
  expect(second[1]).toBe("orders to ship: 4 (events projected: 8)");
});
