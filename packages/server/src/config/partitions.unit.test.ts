import { describe, expect, it } from "vitest";
import { ConfigError, type NodeOptions } from "./options.js";
import { parseConfig, resolveNodeOptions } from "./parse.js";

function run(argv: string[], env: Record<string, string> = {}, file?: string): NodeOptions {
  const cmd = parseConfig(argv, {
    env,
    readFile: (path) => {
      if (file === undefined) throw new Error(`ENOENT: no such file ${path}`);
      return file;
    },
  });
  if (cmd.kind !== "run") throw new Error(`expected run, got ${cmd.kind}`);
  return cmd.options;
}

function failure(argv: string[]): ConfigError {
  try {
    run(argv);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${argv.join(" ")}`);
}

describe("--partition and --partitions", () => {
  it("are off by default", () => {
    const o = run([]);
    expect(o.partition).toBeNull();
    expect(o.partitions).toEqual([]);
  });

  it("take this group's name and every group's name, from flags, environment or file", () => {
    const o = run(["--partition", "west", "--partitions", "east, west,north"]);
    expect(o.partition).toBe("west");
    expect(o.partitions).toEqual(["east", "west", "north"]);
    expect(Object.isFrozen(o.partitions)).toBe(true);
    const e = run([], { CHORUS_PARTITION: "p1", CHORUS_PARTITIONS: "p0,p1" });
    expect([e.partition, e.partitions]).toEqual(["p1", ["p0", "p1"]]);
    const f = run(["--config", "c.yaml"], {}, "partition: b\npartitions: [a, b]\n");
    expect([f.partition, f.partitions]).toEqual(["b", ["a", "b"]]);
  });

  it.each([
    [["--partition", "east"], /--partition east needs --partitions A,B,C/],
    [["--partitions", "east,west"], /--partitions needs --partition NAME/],
    [
      ["--partition", "esat", "--partitions", "east,west"],
      /--partition esat is not one of --partitions east,west/,
    ],
    [
      ["--partition", "East", "--partitions", "East,west"],
      /invalid value for --partition: .*"East"/,
    ],
    [
      ["--partition", "a", "--partitions", "a,b_c"],
      /invalid value for --partitions: partition name "b_c" is not 1 to 32 characters/,
    ],
    [["--partition", "a", "--partitions", "a,a"], /--partitions: partition "a" is listed twice/],
    [["--partition", "x".repeat(33), "--partitions", "x".repeat(33)], /--partition: .*1 to 32/],
  ])("refuses %j", (argv, message) => {
    const err = failure(argv);
    expect(err.message).toMatch(message);
    expect(err.exitCode).toBe(2);
  });

  it("are checked for createNode too", () => {
    expect(() => resolveNodeOptions({ partition: "a", partitions: ["b", "c"] })).toThrow(
      /--partition a is not one of --partitions b,c/,
    );
    expect(resolveNodeOptions({ partition: "a", partitions: ["a", "b"] }).partitions).toEqual([
      "a",
      "b",
    ]);
  });
});
