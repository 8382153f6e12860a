import { describe, expect, it } from "vitest";
import { decodeFrame, encodeFrame } from "./frame.js";
import { asReceivedFrame, isInProcessNode } from "./in-process.js";

describe("asReceivedFrame", () => {
  it.each([
    [{ correlationId: 7, append: { streamId: "s" } }, "append"],
    [{ credentials: { username: "u", password: "p" }, correlationId: 1, ping: {} }, "ping"],
    [{ appendResult: { success: { position: 3 } }, correlationId: 2 }, "appendResult"],
    [{ correlationId: 3, subscriptionEvents: { events: [] } }, "subscriptionEvents"],
  ])("names the body of %j as decodeFrame does", (frame, body) => {
    expect(asReceivedFrame({ ...frame }).body).toBe(body);
    expect(decodeFrame(encodeFrame(frame)).body).toBe(body);
  });

  it("leaves a frame without a known body without one", () => {
    expect(asReceivedFrame({ correlationId: 1 }).body).toBeUndefined();
    expect(asReceivedFrame({ correlationId: 1, append: null }).body).toBeUndefined();
    expect(
      asReceivedFrame({ correlationId: 1, toString: {} } as unknown as { correlationId: number })
        .body,
    ).toBeUndefined();
  });

  it("keeps the frame object and its fields", () => {
    const append = { streamId: "s" };
    const frame = { correlationId: 9, append };
    const received = asReceivedFrame(frame);
    expect(received).toBe(frame);
    expect(received.append).toBe(append);
    expect(received.correlationId).toBe(9);
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
