import { describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_NODE_OPTIONS, type NodeOptions } from "./options.js";
import { envNameOf, helpText, isLoopback, parseConfig, resolveNodeOptions } from "./parse.js";

function run(
  argv: string[],
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): NodeOptions {
  const cmd = parseConfig(argv, {
    env,
    readFile: (p) => {
      const text = files[p];
      if (text === undefined) throw new Error(`ENOENT: no such file ${p}`);
      return text;
    },
  });
  if (cmd.kind !== "run") throw new Error(`expected run, got ${cmd.kind}`);
  return cmd.options;
}

function failure(
  argv: string[],
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): ConfigError {
  try {
    run(argv, env, files);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${argv.join(" ")}`);
}

/** A cluster node with a certificate (TLS between nodes). */
const TLS_CLUSTER = [
  "--cluster-size",
  "3",
  "--gossip-seed",
  "127.0.0.1:2112",
  "--certificate-file",
  "c.pem",
  "--certificate-private-key-file",
  "k.pem",
];

describe("parseConfig", () => {
  it("applies the documented defaults", () => {
    const o = run([]);
    expect(o).toMatchObject({
      memDb: false,
      db: "./data",
      intIp: "127.0.0.1",
      extIp: "127.0.0.1",
      intTcpPort: 1112,
      extTcpPort: 1113,
      intHttpPort: 2112,
      extHttpPort: 2113,
      clusterSize: 1,
      insecure: false,
      adminPassword: null,
      logLevel: "info",
    });
    expect(Object.isFrozen(o)).toBe(true);
  });

  it.each<[string, string[], Partial<NodeOptions>]>([
    ["--flag value", ["--ext-tcp-port", "0"], { extTcpPort: 0 }],
    ["--flag=value", ["--ext-tcp-port=4000"], { extTcpPort: 4000 }],
    ["bare boolean", ["--mem-db"], { memDb: true }],
    ["boolean =true", ["--mem-db=true"], { memDb: true }],
    ["boolean =false", ["--mem-db=false"], { memDb: false }],
    ["boolean then false", ["--mem-db", "false", "--db", "/x"], { memDb: false, db: "/x" }],
    ["boolean then true", ["--insecure", "true"], { insecure: true }],
    ["ips", ["--int-ip", "127.0.0.2", "--ext-ip=::1"], { intIp: "127.0.0.2", extIp: "::1" }],
    ["sizes", ["--max-frame-bytes", "64KiB"], { maxFrameBytes: 65536 }],
    ["plain size", ["--max-frame-bytes=2048"], { maxFrameBytes: 2048 }],
    ["largest append", ["--max-append-bytes", "1MiB"], { maxAppendBytes: 1024 * 1024 }],
    ["default largest append", [], { maxAppendBytes: 1024 * 1024 }],
    ["log level", ["--log-level", "debug"], { logLevel: "debug" }],
    ["last wins", ["--ext-http-port", "1", "--ext-http-port", "2"], { extHttpPort: 2 }],
    ["idempotency window", ["--idempotency-window", "10"], { idempotencyWindow: 10 }],
    ["stream cache", ["--stream-cache", "5000"], { streamCache: 5000 }],
    ["default stream cache", [], { streamCache: 100_000 }],
    ["node priority", ["--node-priority", "-5"], { nodePriority: -5 }],
    ["password", ["--admin-password", "s3cret"], { adminPassword: "s3cret" }],
    [
      "advertised endpoints",
      ["--ext-host-advertise-as", "node1.example.com", "--ext-tcp-port-advertise-as=31113"],
      {
        extHostAdvertiseAs: "node1.example.com",
        extTcpPortAdvertiseAs: 31113,
        extHttpPortAdvertiseAs: null,
      },
    ],
  ])("parses %s", (_name, argv, expected) => {
    expect(run(argv)).toMatchObject(expected);
  });

  it.each<[string, string[], RegExp]>([
    ["unknown flag", ["--no-such-flag"], /unknown flag --no-such-flag/],
    ["unknown flag with value", ["--frobnicate=3"], /unknown flag --frobnicate/],
    ["run-projections", ["--run-projections", "all"], /--run-projections is not supported/],
    ["positional", ["serve"], /unexpected argument serve/],
    [
      "port too big",
      ["--ext-tcp-port", "70000"],
      /--ext-tcp-port: "70000" is not a port \(0-65535\)/,
    ],
    ["negative port", ["--int-http-port=-1"], /--int-http-port/],
    ["port not a number", ["--ext-http-port", "abc"], /--ext-http-port: "abc" is not a port/],
    ["missing value", ["--db"], /--db needs a value/],
    ["bad ip", ["--ext-ip", "999.1.1.1"], /--ext-ip: "999.1.1.1" is not an IP address/],
    ["hostname as ip", ["--int-ip", "localhost"], /--int-ip/],
    ["bad boolean", ["--mem-db=maybe"], /--mem-db: "maybe" is not true or false/],
    ["bad size", ["--max-frame-bytes", "lots"], /--max-frame-bytes/],
    ["size too small", ["--max-frame-bytes", "10"], /--max-frame-bytes/],
    [
      "append beyond a replication frame",
      ["--max-append-bytes", "16MiB"],
      /--max-append-bytes: "16MiB" is not a size between 1024 and 16711680 bytes/,
    ],
    ["bad level", ["--log-level", "loud"], /--log-level/],
    [
      "cluster size",
      ["--cluster-size", "3"],
      /--cluster-size 3 with DNS discovery needs --cluster-dns/,
    ],
    [
      "gossip seed",
      ["--gossip-seed", "10.0.0.1:2112,10.0.0.2:2112"],
      /--gossip-seed needs --cluster-size > 1/,
    ],
    ["cluster dns", ["--cluster-dns", "cluster.local"], /--cluster-dns needs --cluster-size > 1/],
    [
      "dns discovery with a cluster",
      ["--discover-via-dns=true", "--cluster-size=3"],
      /--cluster-size 3 with DNS discovery needs --cluster-dns NAME/,
    ],
    [
      "read-only replica without a cluster",
      ["--read-only-replica"],
      /--read-only-replica needs a cluster to follow/,
    ],
    [
      "bad gossip seed",
      ["--gossip-seed", "nohostport"],
      /--gossip-seed: "nohostport" is not host:port/,
    ],
    [
      "cert without key",
      ["--certificate-file", "c.pem"],
      /both --certificate-file and --certificate-private-key-file/,
    ],
    ["non-loopback without security", ["--ext-ip", "0.0.0.0"], /refusing to start.*0\.0\.0\.0/],
    [
      "non-loopback with cert only",
      ["--int-ip", "10.1.2.3", "--certificate-file", "c", "--certificate-private-key-file", "k"],
      /refusing to start/,
    ],
    [
      "--mem-db with a database URL",
      ["--mem-db", "--db", "postgres://u:pw@db/e"],
      /^--mem-db cannot be used with a database URL in --db: the data lives in the database$/,
    ],
    [
      "--cluster-size with a database URL",
      ["--db", "postgres://u:pw@db/e", "--cluster-size", "3", "--gossip-seed", "127.0.0.1:2112"],
      /^--cluster-size cannot be used with a database URL in --db/,
    ],
    [
      "--gossip-seed with a database URL",
      ["--db", "postgresql://db/e", "--gossip-seed", "127.0.0.1:2112"],
      /^--gossip-seed cannot be used with a database URL in --db/,
    ],
    [
      "--read-only-replica with a database URL",
      ["--db", "postgres://db/e", "--read-only-replica"],
      /^--read-only-replica cannot be used with a database URL/,
    ],
    [
      "a database URL without a host",
      ["--db", "postgres://u:pw@/e"],
      /^invalid value for --db: the URL names no host$/,
    ],
  ])("rejects %s", (_name, argv, message) => {
    const err = failure(argv);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain("pw");
  });

  it("accepts a database URL (one host or several, with target_session_attrs)", () => {
    const url = "postgres://chorus@pg1:5432,pg2:5432/events?target_session_attrs=read-write";
    expect(run(["--db", url]).db).toBe(url);
    expect(run(["--db", "postgresql://db/e"]).clusterSize).toBe(1);
  });

  it("accepts a cluster: --cluster-size with --gossip-seed", () => {
    const o = run(["--cluster-size", "3", "--gossip-seed", "127.0.0.1:2112,127.0.0.1:2122"]);
    expect(o.clusterSize).toBe(3);
    expect(o.gossipSeed).toEqual(["127.0.0.1:2112", "127.0.0.1:2122"]);
    expect(o.discoverViaDns).toBe(false);
  });

  it("accepts a read-only replica of a cluster (--cluster-size counts the voters)", () => {
    const o = run([
      "--read-only-replica",
      "--cluster-size",
      "3",
      "--gossip-seed",
      "127.0.0.1:2112,127.0.0.1:2122",
    ]);
    expect(o.readOnlyReplica).toBe(true);
    expect(o.clusterSize).toBe(3);
    const dns = run(["--read-only-replica", "--cluster-size=3", "--cluster-dns", "chorus.local"]);
    expect(dns.readOnlyReplica).toBe(true);
    expect(dns.discoverViaDns).toBe(true);
  });

  it("accepts DNS discovery: --cluster-size with --cluster-dns", () => {
    const o = run([
      "--cluster-size",
      "3",
      "--discover-via-dns=true",
      "--cluster-dns",
      "cluster.test",
      "--cluster-gossip-port",
      "2112",
      "--dns-server",
      "127.0.0.1:5353",
    ]);
    expect(o).toMatchObject({
      clusterSize: 3,
      discoverViaDns: true,
      clusterDns: "cluster.test",
      clusterGossipPort: 2112,
      dnsServer: "127.0.0.1:5353",
      gossipSeed: [],
    });
  });

  it("turns DNS discovery on by default for a cluster with --cluster-dns and no seeds", () => {
    const o = run(["--cluster-size", "3", "--cluster-dns", "cluster.test"]);
    expect(o.discoverViaDns).toBe(true);
    expect(o.clusterGossipPort).toBe(2112);
    expect(o.dnsServer).toBeNull();
  });

  it("uses DNS and seeds together when both are given", () => {
    const o = run([
      "--cluster-size",
      "3",
      "--gossip-seed",
      "127.0.0.1:2112",
      "--cluster-dns",
      "cluster.test",
    ]);
    expect(o.discoverViaDns).toBe(true);
    expect(o.gossipSeed).toEqual(["127.0.0.1:2112"]);
  });

  it.each<[string, string[], RegExp]>([
    [
      "DNS discovery without --cluster-dns or seeds",
      ["--cluster-size", "3", "--discover-via-dns=true"],
      /--cluster-size 3 with DNS discovery needs --cluster-dns NAME/,
    ],
    [
      "--discover-via-dns=true with seeds but no --cluster-dns",
      ["--cluster-size", "3", "--discover-via-dns=true", "--gossip-seed", "127.0.0.1:2112"],
      /--discover-via-dns=true needs --cluster-dns NAME/,
    ],
    [
      "neither seeds nor DNS",
      ["--cluster-size", "3", "--discover-via-dns=false"],
      /--cluster-size 3 needs --gossip-seed or --cluster-dns/,
    ],
    [
      "--cluster-dns with DNS discovery turned off",
      ["--cluster-size", "3", "--discover-via-dns=false", "--cluster-dns", "cluster.test"],
      /--cluster-dns is given but --discover-via-dns=false/,
    ],
    [
      "a malformed --cluster-dns",
      ["--cluster-size", "3", "--cluster-dns", "bad name!"],
      /--cluster-dns must be a DNS name/,
    ],
    [
      "a --dns-server that is not an IP",
      ["--cluster-size", "3", "--cluster-dns", "cluster.test", "--dns-server", "ns.example:53"],
      /--dns-server must be ip:port/,
    ],
  ])("refuses %s", (_name, argv, message) => {
    const err = failure(argv);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(message);
  });

  it.each<[string, string[], RegExp]>([
    [
      "a wildcard internal bind without an advertised host",
      [
        "--cluster-size",
        "3",
        "--gossip-seed",
        "10.0.0.1:2112",
        "--int-ip",
        "0.0.0.0",
        "--insecure",
      ],
      /--int-host-advertise-as/,
    ],
    ["certificates but no trusted roots", TLS_CLUSTER, /needs --trusted-root-certificates-path/],
  ])("refuses a cluster with %s", (_name, argv, message) => {
    expect(failure(argv).message).toMatch(message);
  });

  it("accepts a cluster with certificates and trusted roots", () => {
    const o = run([...TLS_CLUSTER, "--trusted-root-certificates-path", "ca.pem"]);
    expect(o.certificateFile).toBe("c.pem");
    expect(o.trustedRootCertificatesPath).toBe("ca.pem");
  });

  it("allows a non-loopback bind with --insecure, and with certificates plus a password", () => {
    expect(run(["--ext-ip", "0.0.0.0", "--insecure"]).extIp).toBe("0.0.0.0");
    const secured = run([
      "--ext-ip=0.0.0.0",
      "--certificate-file",
      "c.pem",
      "--certificate-private-key-file",
      "k.pem",
      "--admin-password",
      "pw",
    ]);
    expect(secured.certificateFile).toBe("c.pem");
    // --insecure turns TLS and authentication off.
    const insecure = run(["--insecure", "--admin-password", "pw"]);
    expect(insecure.adminPassword).toBeNull();
  });

  it("reads every flag from CHORUS_* environment variables", () => {
    expect(envNameOf("int-tcp-port")).toBe("CHORUS_INT_TCP_PORT");
    const o = run([], {
      CHORUS_INT_TCP_PORT: "5112",
      CHORUS_ADMIN_PASSWORD: "pw",
      CHORUS_MEM_DB: "true",
      CHORUS_EXT_IP: "::1",
    });
    expect(o).toMatchObject({ intTcpPort: 5112, adminPassword: "pw", memDb: true, extIp: "::1" });
  });

  it("names the environment variable in errors", () => {
    expect(failure([], { CHORUS_EXT_TCP_PORT: "x" }).message).toMatch(
      /--ext-tcp-port \(from CHORUS_EXT_TCP_PORT\)/,
    );
  });

  it("reads YAML and JSON config files with kebab-case keys", () => {
    const yaml = "mem-db: true\next-tcp-port: 0\ngossip-seed: []\nlog-level: warn\n";
    expect(run(["--config", "n.yaml"], {}, { "n.yaml": yaml })).toMatchObject({
      memDb: true,
      extTcpPort: 0,
      logLevel: "warn",
    });
    const json = JSON.stringify({ "ext-http-port": 9000, "admin-password": "pw" });
    expect(run(["--config=n.json"], {}, { "n.json": json })).toMatchObject({
      extHttpPort: 9000,
      adminPassword: "pw",
    });
    expect(run([], { CHORUS_CONFIG: "n.json" }, { "n.json": json }).extHttpPort).toBe(9000);
  });

  it("uses the precedence command line > environment > file > defaults", () => {
    const files = { "c.yaml": "ext-tcp-port: 1\next-http-port: 1\nint-http-port: 1\n" };
    const env = { CHORUS_EXT_TCP_PORT: "2", CHORUS_EXT_HTTP_PORT: "2" };
    const o = run(["--config", "c.yaml", "--ext-tcp-port", "3"], env, files);
    expect([o.extTcpPort, o.extHttpPort, o.intHttpPort, o.intTcpPort]).toEqual([3, 2, 1, 1112]);
  });

  it.each<[string, Record<string, string>, RegExp]>([
    [
      "unknown key",
      { "c.yaml": "ext-tcp-prot: 1\n" },
      /unknown key "ext-tcp-prot" in config file c\.yaml/,
    ],
    [
      "run-projections key",
      { "c.yaml": "run-projections: all\n" },
      /--run-projections is not supported/,
    ],
    [
      "bad value",
      { "c.yaml": "ext-tcp-port: high\n" },
      /--ext-tcp-port \(from config file c\.yaml\)/,
    ],
    ["not a mapping", { "c.yaml": "- a\n- b\n" }, /must hold a mapping/],
    ["invalid YAML", { "c.yaml": "a: [\n" }, /is not valid YAML/],
  ])("rejects a config file with %s", (_name, files, message) => {
    expect(failure(["--config", "c.yaml"], {}, files).message).toMatch(message);
  });

  it("rejects a missing config file", () => {
    expect(failure(["--config", "nope.yaml"]).message).toMatch(
      /cannot read config file nope\.yaml/,
    );
  });

  it("answers --help and --version", () => {
    expect(parseConfig(["--help"]).kind).toBe("help");
    expect(parseConfig(["--version"]).kind).toBe("version");
    expect(helpText()).toMatch(/--ext-tcp-port/);
    expect(helpText()).toMatch(/--admin-password/);
  });
});

describe("resolveNodeOptions", () => {
  it("fills defaults for the embedded API and validates", () => {
    expect(resolveNodeOptions({ memDb: true, extTcpPort: 0 })).toMatchObject({
      ...DEFAULT_NODE_OPTIONS,
      memDb: true,
      extTcpPort: 0,
    });
    expect(() => resolveNodeOptions({ extTcpPort: 65536 })).toThrow(/extTcpPort must be a port/);
    expect(() => resolveNodeOptions({ extIp: "nope" })).toThrow(/extIp must be an IP address/);
    expect(() => resolveNodeOptions({ maxAppendBytes: 16 * 1024 * 1024 })).toThrow(
      /maxAppendBytes must be between 1024 and 16711680 \(a batch must fit one 16777216-byte replication frame/,
    );
  });

  it.each<[string, unknown, RegExp]>([
    ["a misspelt key", { memdb: true }, /unknown node option "memdb" \(known: .*memDb/],
    ["an unknown key", { port: 2113 }, /unknown node option "port"/],
    ["an unknown key set to undefined", { dbPath: undefined }, /unknown node option "dbPath"/],
    ["listen that is not a boolean", { listen: "no" }, /listen must be true or false, got "no"/],
    [
      "listen: false in a cluster",
      { listen: false, clusterSize: 3, gossipSeed: ["127.0.0.1:2113"] },
      /listen: false cannot be used with clusterSize 3/,
    ],
    [
      "listen: false on a shared database",
      { listen: false, db: "postgres://chorus@127.0.0.1/chorus" },
      /listen: false cannot be used with a database URL/,
    ],
    ["null", null, /node options must be an object, got null/],
    ["an array", [], /node options must be an object/],
  ])("refuses %s with a ConfigError naming it", (_what, partial, message) => {
    const refuse = () => resolveNodeOptions(partial as Partial<NodeOptions>);
    expect(refuse).toThrow(ConfigError);
    expect(refuse).toThrow(message);
  });

  it("accepts every key of NodeOptions", () => {
    expect(resolveNodeOptions({ ...DEFAULT_NODE_OPTIONS, memDb: true })).toMatchObject({
      memDb: true,
    });
  });

  it.each<[string, boolean]>([
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["::1", true],
    ["0.0.0.0", false],
    ["10.0.0.1", false],
    ["::", false],
  ])("isLoopback(%s) = %s", (ip, expected) => {
    expect(isLoopback(ip)).toBe(expected);
  });
});

describe("cluster timing flags", () => {
  const TIMING_FLAGS = [
    "heartbeat-interval-ms",
    "election-timeout-ms",
    "gossip-interval-ms",
    "gossip-timeout-ms",
  ];

  it("default to heartbeat 50 ms, election timeout 500 ms, gossip 500 ms / 1,000 ms", () => {
    expect(run([])).toMatchObject({
      heartbeatIntervalMs: 50,
      electionTimeoutMs: 500,
      gossipIntervalMs: 500,
      gossipTimeoutMs: 1_000,
    });
  });

  it("read the command line, CHORUS_* variables and config file keys", () => {
    expect(
      run([
        "--heartbeat-interval-ms",
        "100",
        "--election-timeout-ms=2000",
        "--gossip-interval-ms",
        "250",
        "--gossip-timeout-ms=400",
      ]),
    ).toMatchObject({
      heartbeatIntervalMs: 100,
      electionTimeoutMs: 2_000,
      gossipIntervalMs: 250,
      gossipTimeoutMs: 400,
    });
    const env = {
      CHORUS_HEARTBEAT_INTERVAL_MS: "20",
      CHORUS_ELECTION_TIMEOUT_MS: "300",
      CHORUS_GOSSIP_INTERVAL_MS: "1000",
      CHORUS_GOSSIP_TIMEOUT_MS: "3000",
    };
    expect(run([], env)).toMatchObject({
      heartbeatIntervalMs: 20,
      electionTimeoutMs: 300,
      gossipIntervalMs: 1_000,
      gossipTimeoutMs: 3_000,
    });
    const yaml = "election-timeout-ms: 1500\nheartbeat-interval-ms: 200\ngossip-interval-ms: 750\n";
    expect(run(["--config", "c.yaml"], {}, { "c.yaml": yaml })).toMatchObject({
      heartbeatIntervalMs: 200,
      electionTimeoutMs: 1_500,
      gossipIntervalMs: 750,
    });
    // The command line wins over the environment, as for every flag.
    expect(run(["--election-timeout-ms", "700"], env).electionTimeoutMs).toBe(700);
  });

  it("leaves the WebSocket ping interval alone", () => {
    expect(run(["--heartbeat-interval-ms", "20"]).clientPingIntervalMs).toBe(
      DEFAULT_NODE_OPTIONS.clientPingIntervalMs,
    );
  });

  it.each<[string, string[], RegExp]>([
    [
      "a heartbeat that is not a number",
      ["--heartbeat-interval-ms", "fast"],
      /--heartbeat-interval-ms: "fast" is not a whole number of milliseconds \(10-10000\)/,
    ],
    ["a heartbeat below 10 ms", ["--heartbeat-interval-ms", "5"], /--heartbeat-interval-ms: "5"/],
    [
      "a fractional election timeout",
      ["--election-timeout-ms", "500.5"],
      /--election-timeout-ms: "500.5" is not a whole number of milliseconds/,
    ],
    [
      "an election timeout below 100 ms",
      ["--election-timeout-ms", "50"],
      /--election-timeout-ms: "50" is not a whole number of milliseconds \(100-60000\)/,
    ],
    [
      "an election timeout above a minute",
      ["--election-timeout-ms=600000"],
      /--election-timeout-ms: "600000"/,
    ],
    ["a negative gossip interval", ["--gossip-interval-ms=-1"], /--gossip-interval-ms/],
    [
      "a gossip interval above 10 s",
      ["--gossip-interval-ms", "20000"],
      /--gossip-interval-ms: "20000" is not a whole number of milliseconds \(50-10000\)/,
    ],
    ["a gossip timeout of 0", ["--gossip-timeout-ms", "0"], /--gossip-timeout-ms: "0"/],
    ["a missing value", ["--election-timeout-ms"], /--election-timeout-ms needs a value/],
  ])("rejects %s", (_name, argv, message) => {
    const err = failure(argv);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(message);
  });

  it.each<[string, string[]]>([
    ["equal to half the election timeout", ["--heartbeat-interval-ms", "250"]],
    ["above the election timeout", ["--heartbeat-interval-ms", "600"]],
    [
      "after a shorter election timeout",
      ["--election-timeout-ms", "100", "--heartbeat-interval-ms", "50"],
    ],
  ])("rejects a heartbeat %s, and says why", (_name, argv) => {
    const err = failure(argv);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(
      /--heartbeat-interval-ms \(\d+\) must be less than half of --election-timeout-ms \(\d+\)/,
    );
    expect(err.message).toMatch(/at least two heartbeats per election timeout/);
  });

  it("accepts the largest heartbeat below half the election timeout", () => {
    expect(run(["--election-timeout-ms", "300", "--heartbeat-interval-ms", "149"])).toMatchObject({
      electionTimeoutMs: 300,
      heartbeatIntervalMs: 149,
    });
    const err = failure(["--election-timeout-ms", "300", "--heartbeat-interval-ms", "150"]);
    expect(err.message).toMatch(/at most 149/);
  });

  it("names the environment variable or the config file of a bad value", () => {
    expect(failure([], { CHORUS_ELECTION_TIMEOUT_MS: "soon" }).message).toMatch(
      /--election-timeout-ms \(from CHORUS_ELECTION_TIMEOUT_MS\): "soon"/,
    );
    expect(
      failure(["--config", "c.json"], {}, { "c.json": '{"gossip-timeout-ms": 10}' }).message,
    ).toMatch(/--gossip-timeout-ms \(from config file c\.json\)/);
    // A rule across two flags holds whichever layers they come from.
    expect(
      failure(["--election-timeout-ms", "200"], { CHORUS_HEARTBEAT_INTERVAL_MS: "100" }).message,
    ).toMatch(/must be less than half of --election-timeout-ms \(200\)/);
  });

  it("lists every timing flag in --help", () => {
    for (const flag of TIMING_FLAGS) expect(helpText()).toMatch(new RegExp(`--${flag} <ms>`));
  });

  it("validates the embedded API's options too", () => {
    expect(() => resolveNodeOptions({ electionTimeoutMs: 10 })).toThrow(
      /electionTimeoutMs \(--election-timeout-ms\) must be 100-60000 milliseconds, got 10/,
    );
    expect(() => resolveNodeOptions({ gossipIntervalMs: 1.5 })).toThrow(/gossipIntervalMs/);
    expect(() =>
      resolveNodeOptions({ electionTimeoutMs: 1_000, heartbeatIntervalMs: 500 }),
    ).toThrow(/must be less than half/);
    expect(
      resolveNodeOptions({ electionTimeoutMs: 1_000, heartbeatIntervalMs: 499 }),
    ).toMatchObject({ electionTimeoutMs: 1_000, heartbeatIntervalMs: 499 });
  });
});
