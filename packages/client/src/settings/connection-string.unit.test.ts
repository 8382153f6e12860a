import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import { ConnectionSettings } from "./connection-settings.js";

const parse = (s: string) => ConnectionSettings.fromConnectionString(s);

describe("connection strings", () => {
  const locations: Array<[string, unknown]> = [
    [
      "chorus://127.0.0.1:2113",
      { kind: "singleNode", endpoint: { host: "127.0.0.1", port: 2113 } },
    ],
    ["chorus://localhost", { kind: "singleNode", endpoint: { host: "localhost", port: 2113 } }],
    ["CHORUS://node1:2200/", { kind: "singleNode", endpoint: { host: "node1", port: 2200 } }],
    ["chorus://[::1]:2113", { kind: "singleNode", endpoint: { host: "::1", port: 2113 } }],
    [
      "chorus+discover://10.0.0.1:2113,10.0.0.2:2114",
      {
        kind: "gossipSeeds",
        seeds: [
          { host: "10.0.0.1", port: 2113 },
          { host: "10.0.0.2", port: 2114 },
        ],
      },
    ],
    [
      "chorus+discover://10.0.0.1:2113",
      { kind: "gossipSeeds", seeds: [{ host: "10.0.0.1", port: 2113 }] },
    ],
    [
      "chorus+discover://h1:1,h2:2",
      {
        kind: "gossipSeeds",
        seeds: [
          { host: "h1", port: 1 },
          { host: "h2", port: 2 },
        ],
      },
    ],
    [
      "chorus+discover://cluster.local:2113",
      { kind: "clusterDns", name: "cluster.local", gossipPort: 2113, dnsServers: [], srv: false },
    ],
    [
      "chorus+discover://cluster.local:2113?dnsServer=10.0.0.53:5353",
      {
        kind: "clusterDns",
        name: "cluster.local",
        gossipPort: 2113,
        dnsServers: [{ host: "10.0.0.53", port: 5353 }],
        srv: false,
      },
    ],
    [
      "chorus+srv://cluster.local?dnsServer=10.0.0.53",
      {
        kind: "clusterDns",
        name: "cluster.local",
        gossipPort: 2113,
        dnsServers: [{ host: "10.0.0.53", port: 53 }],
        srv: true,
      },
    ],
  ];
  it.each(locations)("%s", (text, location) => {
    expect(parse(text).location).toEqual(location);
  });

  it("reads every query key, case-insensitively", () => {
    const s = parse(
      "chorus+discover://10.0.0.1:2113,10.0.0.2:2113?NODEPREFERENCE=readonlyreplica&maxDiscoverAttempts=20&discoverdelay=100" +
        "&gossipTimeout=250&operationTimeout=3000&queueTimeout=4000&maxRetries=-1&maxReconnections=5&reconnectionDelay=20" +
        "&heartbeatInterval=300&heartbeatTimeout=900&tls=true&tlsCaFile=/etc/ca.pem&tlsVerifyCert=false&username=admin&password=p%40ss",
    );
    expect(s.nodePreference).toBe("readOnlyReplica");
    expect(s.maxDiscoverAttempts).toBe(20);
    expect(s.discoverDelayMs).toBe(100);
    expect(s.gossipTimeoutMs).toBe(250);
    expect(s.operationTimeoutMs).toBe(3000);
    expect(s.queueTimeoutMs).toBe(4000);
    expect(s.maxRetries).toBe(Infinity);
    expect(s.maxReconnections).toBe(5);
    expect(s.reconnectionDelayMs).toBe(20);
    expect(s.heartbeat).toEqual({ intervalMs: 300, timeoutMs: 900 });
    expect(s.tls).toEqual({ caFile: "/etc/ca.pem", rejectUnauthorized: false });
    expect(s.defaultCredentials).toEqual({ username: "admin", password: "p@ss" });
  });

  it("reads the retry budget keys; the ones not given keep their defaults", () => {
    expect(
      parse(
        "chorus://h:1?retryBudgetRatio=0.5&retryBudgetMinRetriesPerSecond=2.5&retryBudgetWindow=5000",
      ).retryBudget,
    ).toEqual({ ratio: 0.5, minRetriesPerSecond: 2.5, windowMs: 5000 });
    expect(parse("chorus://h:1?retryBudgetRatio=1").retryBudget).toEqual({
      ratio: 1,
      minRetriesPerSecond: 10,
      windowMs: 10_000,
    });
  });

  it("takes credentials from the user info", () => {
    expect(parse("chorus://admin:changeit@localhost:2113").defaultCredentials).toEqual({
      username: "admin",
      password: "changeit",
    });
  });

  it("tls=false is plain; the default is plain", () => {
    expect(parse("chorus://h:1?tls=false").tls).toBeUndefined();
    expect(parse("chorus://h:1").tls).toBeUndefined();
    expect(parse("chorus://h:1?tls=TRUE").tls).toEqual({ rejectUnauthorized: true });
  });

  const malformed: Array<[string, RegExp]> = [
    ["", /non-empty/],
    ["localhost:2113", /missing scheme/],
    ["http://localhost:2113", /unknown scheme "http"/],
    ["chorus://", /no host/],
    ["chorus://a:1,b:2", /chorus:\/\/ takes one node/],
    ["chorus://h:99999", /host "h:99999".*port/],
    ["chorus://h:x", /invalid port "x"/],
    ["chorus+discover://a:1,,b:2", /empty host #2/],
    ["chorus://h:1/path", /unexpected path "\/path"/],
    ["chorus://h:1?bogus=1", /unknown query key "bogus"/],
    ["chorus://h:1?maxRetries=abc", /maxRetries=abc: expected an integer/],
    ["chorus://h:1?maxDiscoverAttempts=0", /maxDiscoverAttempts=0: must be an integer >= 1/],
    ["chorus://h:1?nodePreference=master", /nodePreference=master/],
    ["chorus://h:1?tls=yes", /tls=yes: expected true or false/],
    ["chorus://h:1?tlsVerifyCert=false", /tlsVerifyCert needs tls=true/],
    ["chorus://h:1?gossipTimeout=", /gossipTimeout has an empty value/],
    ["chorus://h:1?gossipTimeout=1&gossipTimeout=2", /gossipTimeout is given more than once/],
    ["chorus://h:1?username=admin", /username given without password/],
    ["chorus://h:1?novalue", /"novalue" must be key=value/],
    ["chorus+srv://name:2113", /without a port/],
    ["chorus+srv://a,b", /one DNS name/],
    ["chorus://h:1?dnsServer=1.2.3.4", /dnsServer applies/],
    ["chorus+discover://a:1,b:2?dnsServer=1.2.3.4", /dnsServer applies to a DNS name/],
    ["chorus://user@h:1", /user info/],
    ["chorus://h:1?retryBudgetRatio=-1", /retryBudgetRatio=-1: expected a non-negative number/],
    ["chorus://h:1?retryBudgetRatio=20", /retry budget: retry budget ratio must be/],
    ["chorus://h:1?retryBudgetWindow=10", /windowMs must be in 1000..60000/],
  ];
  it.each(malformed)("rejects %j", (text, message) => {
    expect(() => parse(text)).toThrow(InvalidArgumentError);
    expect(() => parse(text)).toThrow(message);
  });

  it("never puts the password in an error", () => {
    let message = "";
    try {
      parse("chorus://admin:%E0%A4%A@h:1");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/password is not valid percent-encoding/);
    expect(message).not.toContain("%E0%A4%A");
  });
});
