// Bundles the admin UI (src/main.tsx, Preact and uPlot included) into dist/: index.html and
// content-hashed app-*.js / app-*.css. No network: everything comes from node_modules.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const out = path.join(root, "dist");
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const result = await build({
  entryPoints: { app: path.join(root, "src/main.tsx") },
  outdir: out,
  entryNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
const js = outputs.find((f) => /^app-.*\.js$/.test(f));
const css = outputs.find((f) => /^app-.*\.css$/.test(f));
if (!js || !css) throw new Error(`the bundle lacks app-*.js or app-*.css: ${outputs.join(", ")}`);
const html = (await readFile(path.join(root, "src/index.html"), "utf8"))
  .replace("%JS%", `./${js}`)
  .replace("%CSS%", `./${css}`);
await writeFile(path.join(out, "index.html"), html);
console.log(`admin UI: dist/index.html, ${js}, ${css}`);
