// Generates static protobufjs code from chorus.proto into src/gen/ (not committed).
// With --copy, copies the generated JavaScript next to the compiled output in dist/gen/.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const gen = join(root, "src", "gen");
const dist = join(root, "dist", "gen");

if (process.argv.includes("--copy")) {
  mkdirSync(dist, { recursive: true });
  copyFileSync(join(gen, "chorus.js"), join(dist, "chorus.js"));
  copyFileSync(join(gen, "chorus.d.ts"), join(dist, "chorus.d.ts"));
  process.exit(0);
}

const require = createRequire(import.meta.url);
const cliDir = dirname(require.resolve("protobufjs-cli/package.json"));
const pbjs = join(cliDir, "bin", "pbjs");
const pbts = join(cliDir, "bin", "pbts");
mkdirSync(gen, { recursive: true });
const js = join(gen, "chorus.js");
execFileSync(
  process.execPath,
  [
    pbjs,
    "-t",
    "static-module",
    "-w",
    "es6",
    "--force-number",
    "--no-beautify",
    "--no-delimited",
    "--no-verify",
    "-o",
    js,
    join(root, "chorus.proto"),
  ],
  { stdio: "inherit" },
);
// Node's ESM loader needs the file extension, and protobufjs/minimal is CommonJS:
// its namespace only has a default export.
let code = readFileSync(js, "utf8");
code = code.replace(
  /import \* as \$protobuf from "protobufjs\/minimal";/,
  'import $protobuf from "protobufjs/minimal.js";',
);
// uint64 fields are decoded as plain numbers (exact below 2^53) instead of Long
// objects, without reconfiguring the shared protobufjs runtime.
code = code.replace(
  "const $Reader = $protobuf.Reader",
  'const $num = (v) => (typeof v === "number" ? v : v.toNumber(true));\nconst $Reader = $protobuf.Reader',
);
code = code.replace(/= r\.uint64\(\);/g, "= $num(r.uint64());");
writeFileSync(js, code);
execFileSync(process.execPath, [pbts, "-o", join(gen, "chorus.d.ts"), js], { stdio: "inherit" });
let dts = readFileSync(join(gen, "chorus.d.ts"), "utf8");
dts = dts.replace(/^import Long = require\("long"\);\n/m, "");
writeFileSync(join(gen, "chorus.d.ts"), dts);
