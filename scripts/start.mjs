// `npm start`: a local three-node cluster on loopback with on-disk data under
// ./data/node1..3, printing its connection string. Ctrl-C stops it gracefully.
// `npm start -- --single` runs one node under ./data/single instead.
// `npm start -- --db postgres://user:pass@host:5432/dbname` runs three instances on that
// PostgreSQL database instead (shared-database mode; nothing under ./data).
// `npm start -- --partitions 2` runs two replication groups (p1, p2) of three nodes each
// (with --single: one node each) under ./data/p1, ./data/p2: a partitioned deployment.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../packages/server/bin/chorus-server.js", import.meta.url));
const single = process.argv.includes("--single");
const argv = process.argv.slice(2).filter((a) => a !== "--single");
// --db URL / --db=URL: shared-database mode. --partitions N: N replication groups.
let database;
let partitionCount = 0;
const extra = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = a === "--db" ? argv[++i] : a.startsWith("--db=") ? a.slice(5) : undefined;
  const groups =
    a === "--partitions" ? argv[++i] : a.startsWith("--partitions=") ? a.slice(13) : undefined;
  if (groups !== undefined) {
    partitionCount = Number(groups);
    if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > 9) {
      process.stderr.write(
        `npm start: --partitions takes a number of groups, 1 to 9, got ${groups}\n`,
      );
      process.exit(2);
    }
  } else if (value !== undefined && /^postgres(ql)?:\/\//i.test(value)) database = value;
  else if (a === "--db") extra.push(a, value);
  else extra.push(a);
}
if (partitionCount > 0 && database) {
  process.stderr.write(
    "npm start: --partitions runs local groups; it does not take --db postgres://\n",
  );
  process.exit(2);
}

// Ports per node i (1-based): native 1i13, HTTP 2i13, internal TCP 1i12, internal HTTP 2i12,
// e.g. node 1: 11113 / 21113 / 11112 / 21112.
// With partitions, group g (1-based) adds 100 * (g - 1): group 2's node 1 is 11213 / 21213 / ...
const ports = (i, g = 1) => [
  "--ext-tcp-port",
  String(10_000 + i * 1000 + (g - 1) * 100 + 113),
  "--ext-http-port",
  String(20_000 + i * 1000 + (g - 1) * 100 + 113),
  "--int-tcp-port",
  String(10_000 + i * 1000 + (g - 1) * 100 + 112),
  "--int-http-port",
  String(20_000 + i * 1000 + (g - 1) * 100 + 112),
];
const groupNames = Array.from({ length: partitionCount }, (_, g) => `p${g + 1}`);
/** The nodes of partition group g (1-based): three, or one with --single. */
const groupNodes = (g) => {
  const size = single ? 1 : 3;
  const members = Array.from({ length: size }, (_, k) => k + 1);
  return members.map((i) => ({
    name: `p${g}-node${i}`,
    group: `p${g}`,
    ext: 20_000 + i * 1000 + (g - 1) * 100 + 113,
    args: [
      "--db",
      `./data/p${g}/node${i}`,
      "--log",
      `./data/p${g}/node${i}/logs`,
      ...ports(i, g),
      "--partition",
      `p${g}`,
      "--partitions",
      groupNames.join(","),
      ...(size > 1
        ? [
            "--cluster-size",
            String(size),
            "--gossip-seed",
            members
              .filter((j) => j !== i)
              .map((j) => `127.0.0.1:${20_000 + j * 1000 + (g - 1) * 100 + 112}`)
              .join(","),
          ]
        : []),
    ],
  }));
};
let nodes = database
  ? [1, 2, 3].map((i) => ({
      name: `instance${i}`,
      ext: 20_000 + i * 1000 + 113,
      args: ["--db", database, ...ports(i)],
    }))
  : single
    ? [
        {
          name: "single",
          ext: 2113,
          args: ["--db", "./data/single", "--log", "./data/single/logs"],
        },
      ]
    : [1, 2, 3].map((i) => ({
        name: `node${i}`,
        ext: 20_000 + i * 1000 + 113,
        args: [
          "--db",
          `./data/node${i}`,
          "--log",
          `./data/node${i}/logs`,
          ...ports(i),
          "--cluster-size",
          "3",
          "--gossip-seed",
          [1, 2, 3]
            .filter((j) => j !== i)
            .map((j) => `127.0.0.1:${20_000 + j * 1000 + 112}`)
            .join(","),
        ],
      }));
if (partitionCount > 0) nodes = groupNames.flatMap((_, g) => groupNodes(g + 1));

const levels = { 10: "TRACE", 20: "DEBUG", 30: "INFO ", 40: "WARN ", 50: "ERROR", 60: "FATAL" };
let ready = 0;
const children = nodes.map((node) => {
  const child = spawn(process.execPath, [bin, ...node.args, ...extra], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      process.stdout.write(`[${node.name}] ${line}\n`);
      return;
    }
    const time = new Date(entry.time ?? Date.now()).toISOString().slice(11, 23);
    process.stdout.write(`${time} ${levels[entry.level] ?? "INFO "} [${node.name}] ${entry.msg}\n`);
    if (entry.msg === "node ready" && ++ready === nodes.length && partitionCount > 0) {
      const strings = groupNames.map((group) => {
        const hosts = nodes.filter((n) => n.group === group).map((n) => `127.0.0.1:${n.ext}`);
        return single
          ? `chorus://${hosts[0]}?tls=false`
          : `chorus+discover://${hosts.join(",")}?tls=false`;
      });
      process.stdout.write(
        `\nChorus is running: ${partitionCount} replication groups (${groupNames.join(", ")}) of ` +
          `${single ? "one node" : "three nodes"} each, data in ./data/p1..p${partitionCount}.\n` +
          groupNames.map((g, k) => `  ${g}: ${strings[k]}\n`).join("") +
          `  client: ConnectionSettings.create().withPartitions({ ` +
          groupNames.map((g, k) => `${g}: "${strings[k]}"`).join(", ") +
          ` }).build()\n` +
          `  cli:    npx chorus ` +
          groupNames.map((g, k) => `--partition "${g}=${strings[k]}"`).join(" ") +
          ` status\n` +
          `  docs:   docs/partitions.md\n` +
          `Press Ctrl-C to stop.\n\n`,
      );
    } else if (entry.msg === "node ready" && ready === nodes.length) {
      const hosts = nodes.map((n) => `127.0.0.1:${n.ext}`);
      const url =
        single && !database
          ? `chorus://${hosts[0]}?tls=false`
          : `chorus+discover://${hosts.join(",")}?tls=false`;
      const what = database
        ? "three instances, data in the PostgreSQL database"
        : single
          ? "one node, data in ./data"
          : "three nodes, data in ./data";
      process.stdout.write(
        `\nChorus is running (${what}).\n` +
          `  connection string: ${url}\n` +
          `  HTTP API:          http://${hosts[0]}/info\n` +
          `  admin UI:          http://${hosts[0]}/ui/\n` +
          `  command line:      npx chorus --connection "${url}" status\n` +
          `Press Ctrl-C to stop.\n\n`,
      );
    }
  });
  child.on("exit", (code, signal) => {
    if (code !== 0 && signal === null) process.exitCode = code ?? 1;
  });
  return child;
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const child of children) child.kill("SIGTERM");
  });
}
