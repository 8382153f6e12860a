import { describe, expect, it } from "vitest";
import { classify } from "../discovery/gossip.js";
import { explainTlsFailure, opensslReason } from "./tls-failure.js";

/** An error as Node.js raises it: a message and a code (on the error or, via undici, its cause). */
function failure(code: string, message = "failed", wrapped = false): Error {
  const err = Object.assign(new Error(message), { code });
  return wrapped ? new Error("fetch failed", { cause: err }) : err;
}

describe("explainTlsFailure", () => {
  it.each([
    ["ERR_SSL_WRONG_VERSION_NUMBER", /answered without TLS.*tls=false/],
    ["ERR_SSL_PACKET_LENGTH_TOO_LONG", /answered without TLS/],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", /not signed by an authority this client trusts.*tlsCaFile/],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", /tlsCaFile=PATH/],
    ["SELF_SIGNED_CERT_IN_CHAIN", /useTls\(\{ ca \}\)/],
    ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", /not signed by an authority/],
    ["ERR_TLS_CERT_ALTNAME_INVALID", /does not name 10\.0\.0\.7.*--ext-host-advertise-as/],
    ["CERT_HAS_EXPIRED", /has expired/],
    ["CERT_NOT_YET_VALID", /not valid yet.*clocks/],
  ])("%s", (code, text) => {
    const explained = explainTlsFailure(failure(code), "10.0.0.7");
    expect(explained?.code).toBe(code);
    expect(explained?.text).toMatch(text);
  });

  it("finds the code on the cause, as undici reports a failed connection", () => {
    expect(explainTlsFailure(failure("CERT_HAS_EXPIRED", "x", true), "h")?.code).toBe(
      "CERT_HAS_EXPIRED",
    );
  });

  it("is undefined for errors that are not TLS failures", () => {
    expect(explainTlsFailure(failure("ECONNREFUSED"), "h")).toBeUndefined();
    expect(explainTlsFailure(new Error("no code"), "h")).toBeUndefined();
    expect(explainTlsFailure(undefined, "h")).toBeUndefined();
  });

  it("keeps another TLS failure's own reason, without OpenSSL's prefix and source location", () => {
    const err = failure(
      "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE",
      "809C0C214C7F0000:error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1586:SSL alert number 40\n",
    );
    expect(explainTlsFailure(err, "h")?.text).toBe(
      "sslv3 alert handshake failure (SSL alert number 40)",
    );
  });
});

describe("opensslReason", () => {
  it.each([
    [
      "809C0C214C7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n",
      "wrong version number",
    ],
    [
      "4057E1F7:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed",
      "certificate verify failed",
    ],
    ["self-signed certificate", "self-signed certificate"],
    ["  spaced  ", "spaced"],
  ])("%j -> %j", (message, reason) => {
    expect(opensslReason(message)).toBe(reason);
  });
});

describe("classify (gossip) with TLS failures", () => {
  it("says what a TLS failure means and keeps its code", () => {
    const err = classify(failure("ERR_SSL_WRONG_VERSION_NUMBER", "x", true), 1000, {
      host: "127.0.0.1",
      tls: true,
    });
    expect(err.kind).toBe("tls");
    expect(err.message).toMatch(
      /^TLS: the node answered without TLS.*\(ERR_SSL_WRONG_VERSION_NUMBER\)$/,
    );
  });

  it("suggests tls=true when a plain request was cut off", () => {
    const cut = failure("UND_ERR_SOCKET", "other side closed");
    expect(classify(cut, 1000, { host: "h", tls: false }).message).toMatch(
      /other side closed \(UND_ERR_SOCKET\); a node that serves TLS.*tls=true/,
    );
    expect(classify(cut, 1000, { host: "h", tls: true }).message).toBe(
      "other side closed (UND_ERR_SOCKET)",
    );
  });
});
