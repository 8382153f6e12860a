/**
 * What a failed TLS connection means, in words a user can act on. Node.js reports TLS
 * failures with OpenSSL's codes and texts ("809C0C21:error:0A00010B:SSL
 * routines:ssl3_get_record:wrong version number:../deps/openssl/...:350:"); the few that
 * come from a misconfiguration are explained here with what to change, the rest keep their
 * own reason without OpenSSL's prefix and source location. Used for gossip requests and for
 * WebSocket connections alike.
 */

/** Error codes Node.js and OpenSSL give TLS failures. */
const TLS_CODE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_|ERR_OSSL|HOSTNAME|ALTNAME/;

/** The node answered with something other than TLS: it serves plain connections. */
const NOT_TLS = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_UNKNOWN_PROTOCOL",
]);

/** The node's certificate chain ends at no authority this client trusts. */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
]);

export interface TlsFailure {
  /** The error's code (`ERR_SSL_WRONG_VERSION_NUMBER`, `CERT_HAS_EXPIRED`, ...). */
  readonly code: string;
  /** What went wrong and what to change, one sentence. */
  readonly text: string;
}

/** The error's code, its own or its cause's (undici wraps socket errors). */
export function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null | undefined;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === "string" ? code : "";
}

/**
 * Explains `err` when it is a TLS failure of a connection to `host` (the name or address
 * the client connected to); undefined for any other error.
 */
export function explainTlsFailure(err: unknown, host: string): TlsFailure | undefined {
  const code = errorCode(err);
  if (!TLS_CODE.test(code)) return undefined;
  if (NOT_TLS.has(code)) {
    return {
      code,
      text: "the node answered without TLS (it serves plain connections): connect with tls=false, or give the node a certificate (--certificate-file, --certificate-private-key-file)",
    };
  }
  if (UNTRUSTED.has(code)) {
    return {
      code,
      text: "the node's certificate is not signed by an authority this client trusts: name the authority's certificate with tlsCaFile=PATH in the connection string (or useTls({ ca }))",
    };
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return {
      code,
      text: `the node's certificate does not name ${host}: connect through a name or address the certificate holds; when ${host} is the address the node advertises to clients (its --ext-ip), have it advertise a name its certificate holds (--ext-host-advertise-as) or give it a certificate that names ${host}`,
    };
  }
  if (code === "CERT_HAS_EXPIRED") {
    return { code, text: "the node's certificate has expired: renew it on the node" };
  }
  if (code === "CERT_NOT_YET_VALID") {
    return {
      code,
      text: "the node's certificate is not valid yet: check the clocks of this machine and of the one that issued it",
    };
  }
  return { code, text: opensslReason(messageOf(err)) };
}

function messageOf(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown } } | null | undefined;
  const message = e?.message ?? e?.cause?.message;
  return typeof message === "string" ? message : String(err);
}

/**
 * OpenSSL's reason without its prefix and source location:
 * "809C0C21:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate
 * verify failed:../deps/openssl/.../statem_clnt.c:1889:" becomes "certificate verify failed";
 * what follows the location is kept in parentheses ("sslv3 alert handshake failure (SSL alert
 * number 40)"). Any other text is kept, trimmed.
 */
export function opensslReason(message: string): string {
  const m = /^[0-9A-F]+:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+)(?::[^:]*:\d+:(.*))?$/s.exec(
    message.trim(),
  );
  if (m === null) return message.trim();
  const reason = (m[1] as string).trim();
  const extra = m[2]?.trim();
  return extra ? `${reason} (${extra})` : reason;
}
