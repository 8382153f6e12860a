/**
 * The server's layering (docs: /work/shared/design/architecture.md, "Storage, second
 * generation"), checked on the sources:
 *
 * - api/ and cluster/ never import each other: what both need is in the leaf module
 *   node-types.ts, and node.ts hands the API the cluster role as a ClusterView;
 * - a leaf module imports nothing from this package but other leaf modules;
 * - domain code (persistent/, streams/, subscriptions/) imports neither api/ nor cluster/ and
 *   builds no protocol error frames: it throws domain errors, which api/errors.ts maps.
 *
 * Test files may cross layers (a gossip test serves gossip through the API's adapter).
 */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL(".", import.meta.url));

/** Modules that depend on nothing of the package (but each other). */
const LEAF_MODULES = ["node-types.ts"];
const DOMAIN_DIRS = ["persistent", "streams", "subscriptions"];
/** Protocol error frames: only the API layer builds them. */
const WIRE_ERROR_WORDS = /\b(ErrorResponse|NotHandled)\b/;

/** Layers a layer must not import, by top-level directory. */
const FORBIDDEN: Record<string, readonly string[]> = {
  api: ["cluster"],
  cluster: ["api"],
  ...Object.fromEntries(DOMAIN_DIRS.map((d) => [d, ["api", "cluster"]])),
};

function topDir(file: string): string {
  const slash = file.indexOf("/");
  return slash < 0 ? "" : file.slice(0, slash);
}

/** The relative imports of a source, resolved to paths under src (`.js` named as `.ts`). */
function importsOf(file: string, text: string): { target: string; spec: string; line: number }[] {
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles
    .filter((f) => f.fileName.startsWith("."))
    .map((f) => ({
      spec: f.fileName,
      target: path.posix.join(path.posix.dirname(file), f.fileName).replace(/\.js$/, ".ts"),
      line: text.slice(0, f.pos).split("\n").length,
    }));
}

/** Every break of the rules above, one line each: `file:line imports spec (target): rule`. */
function layeringViolations(sources: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of sources) {
    if (file.endsWith(".test.ts")) continue;
    const from = topDir(file);
    for (const { target, spec, line } of importsOf(file, text)) {
      const where = `${file}:${line} imports ${spec} (${target})`;
      const to = topDir(target);
      if (target.startsWith("..")) out.push(`${where}: outside packages/server/src`);
      else if (FORBIDDEN[from]?.includes(to)) out.push(`${where}: ${from}/ must not import ${to}/`);
      if (LEAF_MODULES.includes(file) && !LEAF_MODULES.includes(target))
        out.push(`${where}: the leaf module ${file} may import only leaf modules`);
    }
    if (DOMAIN_DIRS.includes(from)) {
      text.split("\n").forEach((lineText, i) => {
        const word = WIRE_ERROR_WORDS.exec(lineText);
        if (word)
          out.push(
            `${file}:${i + 1} mentions ${word[0]}: domain code throws domain errors (mapped in api/errors.ts)`,
          );
      });
    }
  }
  return out;
}

function readSources(dir: string, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const [k, v] of readSources(full, rel)) out.set(k, v);
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
      out.set(rel, readFileSync(full, "utf8"));
    }
  }
  return out;
}

describe("layering of packages/server/src", () => {
  const sources = readSources(SRC);

  it("reads the sources and their imports", () => {
    expect(sources.has("node.ts")).toBe(true);
    for (const leaf of LEAF_MODULES) expect(sources.has(leaf)).toBe(true);
    // node.ts wires both layers: the scanner must see that, or it would pass on nothing.
    const wired = importsOf("node.ts", sources.get("node.ts") ?? "").map((i) => topDir(i.target));
    expect(wired).toEqual(expect.arrayContaining(["api", "cluster"]));
  });

  it("keeps api/ and cluster/ apart, the leaf modules leaves and domain code free of wire errors", () => {
    expect(layeringViolations(sources)).toEqual([]);
  });

  it("names the offending import", () => {
    const fake = new Map([
      ["cluster/gossip/wire.ts", 'import type { MemberInfo } from "../../api/http.js";\n'],
      [
        "api/native.ts",
        '// from "../cluster/x.js"\n\nimport { NotLeaderError } from "../cluster/node-role.js";\n',
      ],
      ["api/native.unit.test.ts", 'import { ClusterRole } from "../cluster/node-role.js";\n'],
      [
        "node-types.ts",
        'import type { Logger } from "pino";\nimport type { X } from "./api/context.js";\n',
      ],
      [
        "persistent/service.ts",
        'import { x } from "./group.js";\nconst Code = chorus.ErrorResponse.Code;\n',
      ],
      [
        "node.ts",
        'import { ClusterRole } from "./cluster/node-role.js";\nimport "./api/http.js";\n',
      ],
    ]);
    expect(layeringViolations(fake)).toEqual([
      "cluster/gossip/wire.ts:1 imports ../../api/http.js (api/http.ts): cluster/ must not import api/",
      "api/native.ts:3 imports ../cluster/node-role.js (cluster/node-role.ts): api/ must not import cluster/",
      "node-types.ts:2 imports ./api/context.js (api/context.ts): the leaf module node-types.ts may import only leaf modules",
      "persistent/service.ts:2 mentions ErrorResponse: domain code throws domain errors (mapped in api/errors.ts)",
    ]);
  });
});
