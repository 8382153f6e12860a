import { describe, expect, it } from "vitest";
import {
  DEFAULT_CONNECTION,
  redactConnection,
  resolveConnection,
  scrub,
  secretsOf,
} from "./connection.js";

describe("resolveConnection", () => {
  it.each([
    ["the flag first", "chorus://a:1", { CHORUS_CONNECTION: "chorus://b:2" }, "chorus://a:1"],
    ["then the environment", undefined, { CHORUS_CONNECTION: "chorus://b:2" }, "chorus://b:2"],
    ["an empty flag counts as none", " ", { CHORUS_CONNECTION: "chorus://b:2" }, "chorus://b:2"],
    ["then the default", undefined, {}, DEFAULT_CONNECTION],
  ])("%s", (_name, flag, env, expected) => {
    expect(resolveConnection(flag, env)).toBe(expected);
  });
});

describe("redactConnection", () => {
  it.each([
    ["chorus://admin:s3cret@h:2113?tls=false", "chorus://***@h:2113?tls=false"],
    ["chorus+discover://u:p%40ss@a:1,b:2", "chorus+discover://***@a:1,b:2"],
    [
      "chorus://h:2113?username=admin&Password=s3cret&tls=false",
      "chorus://h:2113?username=***&Password=***&tls=false",
    ],
    ["chorus://h:2113?tls=false", "chorus://h:2113?tls=false"],
    ["chorus://h:2113?tlsCaFile=/x@y", "chorus://h:2113?tlsCaFile=/x@y"],
  ])("%s", (input, expected) => {
    expect(redactConnection(input)).toBe(expected);
  });
});

describe("secretsOf and scrub", () => {
  it("finds the password raw and decoded, in the user info and the query", () => {
    expect(secretsOf("chorus://u:p%40ss@h:1")).toEqual(["p%40ss", "p@ss"]);
    expect(secretsOf("chorus://h:1?password=abc")).toEqual(["abc"]);
    expect(secretsOf("chorus://h:1")).toEqual([]);
  });

  it("masks every occurrence", () => {
    expect(scrub("x p@ss y p@ss", ["p@ss"])).toBe("x *** y ***");
  });
});
