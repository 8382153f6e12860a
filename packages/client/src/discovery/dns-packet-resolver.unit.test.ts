import { describe, expect, it } from "vitest";
import { parseResolvConf } from "./dns-packet-resolver.js";

describe("parseResolvConf", () => {
  it.each([
    [
      "nameserver 10.0.0.53\nnameserver ::1\n",
      [
        { host: "10.0.0.53", port: 53 },
        { host: "::1", port: 53 },
      ],
    ],
    [
      "# comment\nsearch example.com\n  nameserver 192.0.2.1  # trailing\n",
      [{ host: "192.0.2.1", port: 53 }],
    ],
    ["nameserver fe80::1%eth0\n", [{ host: "fe80::1", port: 53 }]],
    ["nameserver not-an-ip\n", [{ host: "127.0.0.1", port: 53 }]],
    ["", [{ host: "127.0.0.1", port: 53 }]],
  ])("%j", (text, servers) => {
    expect(parseResolvConf(text)).toEqual(servers);
  });
});
