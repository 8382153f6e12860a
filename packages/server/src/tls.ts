/**
 * TLS material of a node: its certificate and key (`--certificate-file`,
 * `--certificate-private-key-file`) and the roots it trusts for peers
 * (`--trusted-root-certificates-path`, a PEM file or a directory of them).
 *
 * External listeners serve the certificate to anyone. Internal listeners (replication and
 * gossip) also demand a client certificate signed by a trusted root, so only cluster members
 * get in; a node presents the same certificate when it connects to a peer and verifies the
 * peer's against the same roots.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import type { ServerOptions } from "node:https";
import { join } from "node:path";
import type { NodeOptions } from "./config/index.js";

/** What a node presents and trusts when it connects to another node. */
export interface PeerTls {
  readonly ca: readonly Buffer[];
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface NodeTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The trusted roots; undefined when no `--trusted-root-certificates-path` was given. */
  readonly ca: readonly Buffer[] | undefined;
}

/** Files of a trusted-roots directory that are read (others are ignored). */
const CERTIFICATE_FILE = /\.(pem|crt|cer)$/i;

/**
 * Reads the node's TLS files; null when TLS is off. `fail` makes the error thrown for a file
 * that cannot be read (the caller's startup error).
 */
export function loadTls(options: NodeOptions, fail: (message: string) => Error): NodeTls | null {
  if (options.certificateFile === null || options.certificatePrivateKeyFile === null) return null;
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw fail(
        `cannot read the ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  };
  const rootsPath = options.trustedRootCertificatesPath;
  let ca: Buffer[] | undefined;
  if (rootsPath !== null) {
    let files = [rootsPath];
    try {
      if (statSync(rootsPath).isDirectory()) {
        files = readdirSync(rootsPath)
          .filter((name) => CERTIFICATE_FILE.test(name))
          .sort()
          .map((name) => join(rootsPath, name));
      }
    } catch (err) {
      throw fail(
        `cannot read the trusted root certificates ${rootsPath}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (files.length === 0) {
      throw fail(
        `the trusted root certificates directory ${rootsPath} holds no .pem, .crt or .cer file`,
      );
    }
    ca = files.map((file) => read(file, "trusted root certificate"));
  }
  return {
    cert: read(options.certificateFile, "TLS certificate"),
    key: read(options.certificatePrivateKeyFile, "TLS private key"),
    ca,
  };
}

/**
 * Options of an HTTPS listener. An internal one with trusted roots refuses every client that
 * does not present a certificate signed by one of them (mutual TLS).
 */
export function serverTlsOptions(tls: NodeTls, internal: boolean): ServerOptions {
  const base = { cert: tls.cert, key: tls.key };
  if (!internal || tls.ca === undefined) return base;
  return { ...base, ca: [...tls.ca], requestCert: true, rejectUnauthorized: true };
}

/** The TLS a node uses towards its peers; undefined without TLS or without trusted roots. */
export function peerTls(tls: NodeTls | null): PeerTls | undefined {
  if (tls === null || tls.ca === undefined) return undefined;
  return { ca: tls.ca, cert: tls.cert, key: tls.key };
}
