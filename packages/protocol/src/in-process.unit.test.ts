import { describe, expect, it } from "vitest";
import { decodeFrame, encodeFrame } from "./frame.js";
import { frameBodyOf, isInProcessNode } from "./in-process.js";

describe("frameBodyOf", () => {
  it.each([
    [{ correlationId: 7, append: { streamId: "s" } }, "append"],
    [{ credentials: { username: "u", password: "p" }, correlationId: 1, ping: {} }, "ping"],
    [{ appendResult: { success: { position: 3 } }, correlationId: 2 }, "appendResult"],
    [{ correlationId: 3, subscriptionEvents: { events: [] } }, "subscriptionEvents"],
  ])("names the body of %j as decodeFrame does", (frame, body) => {
    expect(frameBodyOf(frame)).toBe(body);
    expect(decodeFrame(encodeFrame(frame)).body).toBe(body);
  });

  it("finds no body where a frame carries none this protocol knows", () => {
    expect(frameBodyOf({ correlationId: 1 })).toBeUndefined();
    expect(frameBodyOf({ correlationId: 1, append: null })).toBeUndefined();
    expect(
      frameBodyOf({ correlationId: 1, toString: {} } as unknown as { correlationId: number }),
    ).toBeUndefined();
  });

  it("leaves the frame as it was", () => {
    const frame = { correlationId: 9, append: { streamId: "s" } };
    frameBodyOf(frame);
    expect(Object.keys(frame)).toEqual(["correlationId", "append"]);
  });
});

describe("isInProcessNode", () => {
  const node = { instanceId: "n", gossip: () => ({}), openInProcess: () => ({}) };
  it("accepts the shape of a node", () => expect(isInProcessNode(node)).toBe(true));
  it.each([null, undefined, "node", {}, { ...node, instanceId: 1 }, { ...node, gossip: 1 }])(
    "refuses %j",
    (value) => expect(isInProcessNode(value)).toBe(false),
  );
});
