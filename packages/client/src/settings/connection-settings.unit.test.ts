import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import { ConnectionSettings } from "./connection-settings.js";
import {
  DEFAULT_GOSSIP_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_RECONNECTIONS,
  DEFAULT_MAX_RETRIES,
  DEFAULT_OPERATION_TIMEOUT_MS,
  DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
  DEFAULT_RETRY_BUDGET_RATIO,
  DEFAULT_RETRY_BUDGET_WINDOW_MS,
} from "./defaults.js";

describe("ConnectionSettings builder", () => {
  it("applies every setting and freezes the result", () => {
    const logger = { debug() {}, info() {}, warn() {}, error() {} };
    const s = ConnectionSettings.create()
      .withGossipSeeds(["10.0.0.1:2113", { host: "10.0.0.2", port: 2114 }])
      .withNodePreference("follower")
      .withDefaultCredentials({ username: "admin", password: "secret" })
      .limitReconnectionsTo(3)
      .withReconnectionDelay(50)
      .limitRetriesForOperationTo(4)
      .withOperationTimeout(1234)
      .withQueueTimeout(2345)
      .withMaxDiscoverAttempts(7)
      .withDiscoverDelay(10)
      .withGossipTimeout(300)
      .withHeartbeat({ intervalMs: 100, timeoutMs: 200 })
      .useTls({ ca: "PEM", rejectUnauthorized: false })
      .withLogger(logger)
      .build();
    expect(s.location).toEqual({
      kind: "gossipSeeds",
      seeds: [
        { host: "10.0.0.1", port: 2113 },
        { host: "10.0.0.2", port: 2114 },
      ],
    });
    expect(s.nodePreference).toBe("follower");
    expect(s.defaultCredentials).toEqual({ username: "admin", password: "secret" });
    expect([s.maxReconnections, s.reconnectionDelayMs, s.maxRetries]).toEqual([3, 50, 4]);
    expect([
      s.operationTimeoutMs,
      s.queueTimeoutMs,
      s.maxDiscoverAttempts,
      s.discoverDelayMs,
      s.gossipTimeoutMs,
    ]).toEqual([1234, 2345, 7, 10, 300]);
    expect(s.heartbeat).toEqual({ intervalMs: 100, timeoutMs: 200 });
    expect(s.tls).toEqual({ ca: "PEM", rejectUnauthorized: false });
    expect(s.logger).toBe(logger);
    expect(Object.isFrozen(s)).toBe(true);
    expect(Object.isFrozen(s.heartbeat)).toBe(true);
    expect(() => {
      (s as { nodePreference: string }).nodePreference = "leader";
    }).toThrow(TypeError);
  });

  it("has documented defaults", () => {
    const s = ConnectionSettings.create().withSingleNode("127.0.0.1:2113").build();
    expect(s.location).toEqual({ kind: "singleNode", endpoint: { host: "127.0.0.1", port: 2113 } });
    expect(s.nodePreference).toBe("leader");
    expect(s.maxReconnections).toBe(DEFAULT_MAX_RECONNECTIONS);
    expect(s.maxRetries).toBe(DEFAULT_MAX_RETRIES);
    expect(s.operationTimeoutMs).toBe(DEFAULT_OPERATION_TIMEOUT_MS);
    expect(s.gossipTimeoutMs).toBe(DEFAULT_GOSSIP_TIMEOUT_MS);
    expect(s.heartbeat.intervalMs).toBe(DEFAULT_HEARTBEAT_INTERVAL_MS);
    expect(s.tls).toBeUndefined();
    expect(s.defaultCredentials).toBeUndefined();
    expect(s.retryBudget).toEqual({
      ratio: DEFAULT_RETRY_BUDGET_RATIO,
      minRetriesPerSecond: DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
      windowMs: DEFAULT_RETRY_BUDGET_WINDOW_MS,
    });
  });

  it("sets, defaults and removes the retry budget", () => {
    const b = () => ConnectionSettings.create().withSingleNode("h:1");
    expect(b().withRetryBudget({ ratio: 0.5 }).build().retryBudget).toEqual({
      ratio: 0.5,
      minRetriesPerSecond: DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
      windowMs: DEFAULT_RETRY_BUDGET_WINDOW_MS,
    });
    const s = b().withRetryBudget({ ratio: 0, minRetriesPerSecond: 2, windowMs: 5_000 }).build();
    expect(s.retryBudget).toEqual({ ratio: 0, minRetriesPerSecond: 2, windowMs: 5_000 });
    expect(Object.isFrozen(s.retryBudget)).toBe(true);
    expect(b().withoutRetryBudget().build().retryBudget).toBeUndefined();
  });

  it("keepReconnecting / keepRetrying mean no limit", () => {
    const s = ConnectionSettings.create()
      .withSingleNode("h:1")
      .keepReconnecting()
      .keepRetrying()
      .build();
    expect(s.maxReconnections).toBe(Infinity);
    expect(s.maxRetries).toBe(Infinity);
  });

  it("stores cluster DNS settings", () => {
    const s = ConnectionSettings.create()
      .withClusterDns("cluster.example.com", {
        gossipPort: 2114,
        dnsServers: ["10.0.0.53"],
        srv: false,
      })
      .build();
    expect(s.location).toEqual({
      kind: "clusterDns",
      name: "cluster.example.com",
      gossipPort: 2114,
      dnsServers: [{ host: "10.0.0.53", port: 53 }],
      srv: false,
    });
  });

  it("never shows the password when logged", () => {
    const s = ConnectionSettings.create()
      .withSingleNode("h:1")
      .withDefaultCredentials({ username: "u", password: "hunter2" })
      .build();
    expect(JSON.stringify(s)).not.toContain("hunter2");
    expect(JSON.stringify(s)).toContain('"username":"u"');
  });

  const invalid: Array<[string, () => unknown, RegExp]> = [
    ["no location", () => ConnectionSettings.create().build(), /no cluster location/],
    [
      "two locations",
      () => ConnectionSettings.create().withSingleNode("a:1").withGossipSeeds(["b:2"]),
      /exactly one/,
    ],
    ["empty seeds", () => ConnectionSettings.create().withGossipSeeds([]), /at least one seed/],
    [
      "seed without port",
      () => ConnectionSettings.create().withGossipSeeds(["host"]),
      /gossip seed #1: "host" has no port/,
    ],
    [
      "bad port",
      () => ConnectionSettings.create().withSingleNode("h:70000"),
      /port must be an integer in 1..65535/,
    ],
    [
      "non-numeric port",
      () => ConnectionSettings.create().withSingleNode("h:abc"),
      /invalid port "abc"/,
    ],
    ["unbracketed IPv6", () => ConnectionSettings.create().withSingleNode("::1:2113"), /IPv6/],
    [
      "bad preference",
      () => ConnectionSettings.create().withNodePreference("master" as never),
      /node preference/,
    ],
    [
      "negative delay",
      () => ConnectionSettings.create().withReconnectionDelay(-1),
      /reconnection delay/,
    ],
    [
      "zero timeout",
      () => ConnectionSettings.create().withOperationTimeout(0),
      /operation timeout must be greater than 0/,
    ],
    [
      "fractional retries",
      () => ConnectionSettings.create().limitRetriesForOperationTo(1.5),
      /limitRetriesForOperationTo/,
    ],
    [
      "zero discover attempts",
      () => ConnectionSettings.create().withMaxDiscoverAttempts(0),
      /withMaxDiscoverAttempts must be an integer >= 1/,
    ],
    [
      "bad heartbeat",
      () => ConnectionSettings.create().withHeartbeat({ intervalMs: 0, timeoutMs: 1 }),
      /heartbeat intervalMs/,
    ],
    [
      "empty username",
      () => ConnectionSettings.create().withDefaultCredentials({ username: "", password: "x" }),
      /username/,
    ],
    ["bad logger", () => ConnectionSettings.create().withLogger({} as never), /logger.debug/],
    [
      "negative retry budget ratio",
      () => ConnectionSettings.create().withRetryBudget({ ratio: -0.1 }),
      /retry budget ratio must be a number in 0..10/,
    ],
    [
      "NaN retries per second",
      () => ConnectionSettings.create().withRetryBudget({ minRetriesPerSecond: NaN }),
      /minRetriesPerSecond/,
    ],
    [
      "too short a retry budget window",
      () => ConnectionSettings.create().withRetryBudget({ windowMs: 500 }),
      /windowMs must be in 1000..60000 ms/,
    ],
    ["bad dns name", () => ConnectionSettings.create().withClusterDns("a b"), /invalid DNS name/],
  ];
  it.each(invalid)("rejects %s", (_name, fn, message) => {
    expect(fn).toThrow(InvalidArgumentError);
    expect(fn).toThrow(message);
  });

  it("accepts bracketed IPv6", () => {
    expect(ConnectionSettings.create().withSingleNode("[::1]:2113").build().location).toEqual({
      kind: "singleNode",
      endpoint: { host: "::1", port: 2113 },
    });
  });
});
