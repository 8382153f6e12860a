import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCertificates {
  /** The directory holding every file; removed by `remove()`. */
  readonly dir: string;
  /** The throwaway CA's certificate (PEM): what a client or peer trusts. */
  readonly caFile: string;
  readonly ca: string;
  /**
   * A node certificate signed by the CA, valid for the given hosts, and its key; usable as a
   * server certificate and as a client certificate (a cluster node presents it to its peers).
   */
  readonly certFile: string;
  readonly keyFile: string;
  /** Flags that make a chorus-server use these files. */
  readonly serverArgs: string[];
  remove(): Promise<void>;
}

/**
 * Makes a throwaway CA and one node certificate for `hosts` (IP addresses or DNS names;
 * default 127.0.0.1 and localhost) with the openssl command line, valid for one day. The
 * certificate's extended key usage is serverAuth and clientAuth, so every node of a test
 * cluster can use it (`startCluster({ tls })`). Each call makes a new CA.
 */
export async function makeTestCertificates(
  options: { hosts?: string[] } = {},
): Promise<TestCertificates> {
  const hosts = options.hosts ?? ["127.0.0.1", "localhost"];
  const dir = await mkdtemp(join(tmpdir(), "chorus-certs-"));
  const openssl = (args: string[]) => run("openssl", args, { cwd: dir });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=chorus-test-ca",
    ]);
    await openssl([
      "req",
      ...ec,
      "-keyout",
      "node.key",
      "-out",
      "node.csr",
      "-subj",
      `/CN=${hosts[0] ?? "node"}`,
    ]);
    const san = hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
    // One certificate a node both serves and presents to its peers (mutual TLS).
    await writeFile(
      join(dir, "ext.cnf"),
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
        `subjectAltName=${san}`,
        "",
      ].join("\n"),
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "node.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "node.pem",
      "-days",
      "1",
      "-extfile",
      "ext.cnf",
    ]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`makeTestCertificates: openssl failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const caFile = join(dir, "ca.pem");
  const certFile = join(dir, "node.pem");
  const keyFile = join(dir, "node.key");
  return {
    dir,
    caFile,
    ca: await readFile(caFile, "utf8"),
    certFile,
    keyFile,
    serverArgs: [
      "--certificate-file",
      certFile,
      "--certificate-private-key-file",
      keyFile,
      "--trusted-root-certificates-path",
      caFile,
    ],
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
