import { describe, expect, it } from "vitest";
import { eventTypeProblem, isUuid, streamNameProblem } from "./index.js";

describe("validation", () => {
  it.each([
    ["order-1", null],
    ["$$order-1", null],
    ["", "stream name must not be empty"],
    ["$all", "$all is not a stream; use readAll / subscribeToAll"],
    ["a\u0000b", "stream name must not contain control characters"],
    ["x".repeat(1025), "stream name is longer than 1024 bytes"],
    ["x".repeat(1024), null],
    ["é".repeat(512), null],
    ["é".repeat(513), "stream name is longer than 1024 bytes"],
    ["€".repeat(342), "stream name is longer than 1024 bytes"],
    [42, "stream name must be a string"],
  ])("stream name %j -> %j", (name, problem) => {
    expect(streamNameProblem(name)).toBe(problem);
  });

  it.each([
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f60", true],
    ["3F0E2A5C-8D7B-4C1E-9A6F-1B2C3D4E5F60", true],
    ["3f0e2a5c8d7b4c1e9a6f1b2c3d4e5f60", false],
    ["not-a-uuid", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6g", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f600", false],
    ["3f0e2a5c8-d7b-4c1e-9a6f-1b2c3d4e5f60", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f_1b2c3d4e5f60", false],
    ["{f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f60", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6G", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6@", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6:", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6/", false],
    ["3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f6`", false],
    ["AbCdEf09-aBcD-eF01-2345-6789abcdefAB", true],
    [42, false],
    [undefined, false],
  ])("uuid %j -> %j", (value, ok) => {
    expect(isUuid(value)).toBe(ok);
  });

  it("requires a non-empty event type", () => {
    expect(eventTypeProblem("")).toBe("event type must not be empty");
    expect(eventTypeProblem("OrderPlaced")).toBeNull();
  });
});
