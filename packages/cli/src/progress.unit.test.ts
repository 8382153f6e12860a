import { describe, expect, it } from "vitest";
import { formatDuration, Progress, renderProgress } from "./progress.js";

describe("renderProgress", () => {
  it("shows bar, percentage, events, rate and ETA", () => {
    expect(
      renderProgress({ label: "export s", fraction: 0.25, events: 2500, elapsedMs: 10_000 }),
    ).toBe("export s  [######------------------]   25%  2,500 events  250/s  ETA 0:30");
  });

  it("leaves out the bar and ETA when the total is unknown", () => {
    expect(renderProgress({ label: "x", fraction: undefined, events: 10, elapsedMs: 2_000 })).toBe(
      "x  10 events  5/s",
    );
  });

  it.each([
    [0, "0:00"],
    [75, "1:15"],
    [3725, "1:02:05"],
  ])("formats %s s as %s", (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});

describe("Progress", () => {
  const sink = (isTTY: boolean) => {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 200, write: (t: string) => writes.push(t) } };
  };

  it("prints nothing when the stream is not a terminal", () => {
    const { writes, stream } = sink(false);
    const p = new Progress(stream, "x");
    p.update(0.5, 5);
    p.finish(true);
    expect(writes).toEqual([]);
  });

  it("redraws at most once per interval and ends the line", () => {
    const { writes, stream } = sink(true);
    let now = 0;
    const p = new Progress(stream, "x", { now: () => now, intervalMs: 100 });
    p.update(0.1, 1);
    now = 50;
    p.update(0.2, 2); // too soon: not drawn
    now = 150;
    p.update(0.3, 3);
    p.finish(true);
    expect(writes).toHaveLength(4);
    expect(writes[0]).toMatch(/^\rx .* 10% {2}1 events/);
    expect(writes[1]).toMatch(/ 30% {2}3 events/);
    expect(writes[2]).toMatch(/100% {2}3 events/);
    expect(writes[3]).toBe("\n");
  });
});
