// `npm start`: one durable node under ./data on the default loopback ports,
// printing its connection string. Ctrl-C stops it gracefully.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../packages/server/bin/chorus-server.js", import.meta.url));
const args = [bin, "--db", "./data", "--log", "./data/logs", ...process.argv.slice(2)];
const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });

const lines = createInterface({ input: child.stdout });
lines.on("line", (line) => {
  let entry;
  try {
    entry = JSON.parse(line);
  } catch {
    process.stdout.write(line + "\n");
    return;
  }
  const time = new Date(entry.time ?? Date.now()).toISOString().slice(11, 23);
  const level =
    { 10: "TRACE", 20: "DEBUG", 30: "INFO ", 40: "WARN ", 50: "ERROR", 60: "FATAL" }[entry.level] ??
    "INFO ";
  process.stdout.write(`${time} ${level} ${entry.msg}\n`);
  if (entry.msg === "node ready") {
    const http = entry.extHttp;
    process.stdout.write(
      `\nChorus is running (data in ./data).\n` +
        `  connection string: chorus://${http.host}:${http.port}?tls=false\n` +
        `  HTTP API:          http://${http.host}:${http.port}/info\n` +
        `Press Ctrl-C to stop.\n\n`,
    );
  }
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child.kill("SIGTERM"));
}
child.on("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
