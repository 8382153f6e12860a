import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_NODE_OPTIONS, type NodeOptions } from "./config/index.js";
import { sourceAddressFor } from "./cluster/transport/peer-network.js";
import { loadTls, peerTls, serverTlsOptions } from "./tls.js";

let dir: string;
const fail = (message: string) => new Error(message);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "chorus-tls-unit-"));
  await writeFile(join(dir, "node.pem"), "CERT");
  await writeFile(join(dir, "node.key"), "KEY");
  await writeFile(join(dir, "roots-b.crt"), "ROOT-B");
  await writeFile(join(dir, "roots-a.pem"), "ROOT-A");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function options(roots: string | null): NodeOptions {
  return {
    ...DEFAULT_NODE_OPTIONS,
    certificateFile: join(dir, "node.pem"),
    certificatePrivateKeyFile: join(dir, "node.key"),
    trustedRootCertificatesPath: roots,
  };
}

describe("loadTls", () => {
  it("reads a trusted roots file, or every certificate file of a directory", () => {
    const one = loadTls(options(join(dir, "roots-a.pem")), fail);
    expect(one?.ca?.map(String)).toEqual(["ROOT-A"]);
    const all = loadTls(options(dir), fail);
    // node.pem is a .pem file too: a directory of roots should hold roots only.
    expect(all?.ca?.map(String)).toEqual(["CERT", "ROOT-A", "ROOT-B"]);
    expect(String(all?.cert)).toBe("CERT");
    expect(String(all?.key)).toBe("KEY");
  });

  it("is off without a certificate, and names a file it cannot read", () => {
    expect(loadTls(DEFAULT_NODE_OPTIONS, fail)).toBeNull();
    expect(() => loadTls(options(join(dir, "missing.pem")), fail)).toThrow(/missing\.pem/);
  });

  it("demands client certificates on internal listeners only when roots are given", () => {
    const withRoots = loadTls(options(join(dir, "roots-a.pem")), fail)!;
    expect(serverTlsOptions(withRoots, true)).toMatchObject({
      requestCert: true,
      rejectUnauthorized: true,
    });
    expect(serverTlsOptions(withRoots, false)).not.toHaveProperty("requestCert");
    const noRoots = loadTls(options(null), fail)!;
    expect(serverTlsOptions(noRoots, true)).not.toHaveProperty("requestCert");
    expect(peerTls(noRoots)).toBeUndefined();
    expect(peerTls(withRoots)?.ca.map(String)).toEqual(["ROOT-A"]);
  });
});

describe("sourceAddressFor", () => {
  it.each([
    ["127.0.0.2", "127.0.0.1", "127.0.0.2"],
    ["127.0.0.2", "::1", undefined],
    ["0.0.0.0", "127.0.0.1", undefined],
    ["::", "::1", undefined],
    ["127.0.0.2", "node-1.internal", undefined],
    [undefined, "127.0.0.1", undefined],
  ])("from %s to %s: %s", (local, host, expected) => {
    expect(sourceAddressFor(local, host)).toBe(expected);
  });
});
