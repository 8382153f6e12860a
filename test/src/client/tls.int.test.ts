// The client against a node serving TLS: it connects when it trusts the CA, and a TLS
// failure is reported as a TLS failure, not as "connection refused" or a timeout, saying
// what to change.
import {
  ChorusClient,
  ConnectionError,
  ConnectionSettings,
  DiscoveryError,
  jsonEvent,
} from "@chorus/client";
import {
  makeTestCertificates,
  startNode,
  type TestCertificates,
  type TestNode,
} from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let certs: TestCertificates;
let node: TestNode;

beforeAll(async () => {
  certs = await makeTestCertificates();
  node = await startNode({ memDb: true, args: certs.serverArgs });
});

afterAll(async () => {
  await node?.stop();
  await certs?.remove();
});

function settings(tls: { ca?: string; rejectUnauthorized?: boolean }) {
  return ConnectionSettings.create()
    .withSingleNode(node.httpEndpoint)
    .useTls(tls)
    .withMaxDiscoverAttempts(1)
    .withOperationTimeout(5_000)
    .build();
}

/** Connects with `settings`, which must fail discovery; the messages of its causes. */
async function discoveryFailure(settings: ConnectionSettings): Promise<string> {
  const client = new ChorusClient(settings);
  try {
    const error = await client.connect().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(DiscoveryError);
    return (error as DiscoveryError).causes.map((c) => c.error.message).join("\n");
  } finally {
    await client.close();
  }
}

describe("TLS", () => {
  it("connects and appends when the client trusts the node's CA", async () => {
    const client = new ChorusClient(settings({ ca: certs.ca }));
    try {
      const result = await client.appendToStream("tls-ok", jsonEvent({ type: "T", data: {} }));
      expect(result.nextExpectedVersion).toBe(0n);
    } finally {
      await client.close();
    }
  });

  it("reports an untrusted certificate as a TLS failure, naming the setting to change", async () => {
    const causes = await discoveryFailure(settings({}));
    expect(causes).toMatch(/TLS: the node's certificate is not signed by an authority/);
    expect(causes).toMatch(/tlsCaFile=PATH/);
    expect(causes).not.toMatch(/refused/i);
  });

  it("reports a plain-text client talking to a TLS node clearly", async () => {
    const causes = await discoveryFailure(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withMaxDiscoverAttempts(1)
        .build(),
    );
    expect(causes).toMatch(/a node that serves TLS closes plain connections.*tls=true/);
  });

  it("tells a TLS client that a node serves plain connections, without OpenSSL's internals", async () => {
    const plain = await startNode({ memDb: true });
    try {
      const causes = await discoveryFailure(
        ConnectionSettings.create()
          .withSingleNode(plain.httpEndpoint)
          .useTls({ ca: certs.ca })
          .withMaxDiscoverAttempts(1)
          .build(),
      );
      expect(causes).toMatch(
        /TLS: the node answered without TLS.*tls=false.*\(ERR_SSL_WRONG_VERSION_NUMBER\)/,
      );
      expect(causes).not.toMatch(/deps\/openssl|SSL routines/);
    } finally {
      await plain.stop();
    }
  });
});

describe("TLS with a certificate that names the node only by name", () => {
  // The certificate names "localhost"; the node listens on 127.0.0.1 and advertises that
  // address to clients unless told otherwise. Gossip through "localhost" succeeds, then the
  // connection to the advertised address fails its name check.
  let named: TestCertificates;
  beforeAll(async () => {
    named = await makeTestCertificates({ hosts: ["localhost"] });
  });
  afterAll(async () => {
    await named?.remove();
  });

  function byName(target: TestNode) {
    return ConnectionSettings.create()
      .withSingleNode(`localhost:${target.httpEndpoint.split(":").pop()}`)
      .useTls({ ca: named.ca })
      .withMaxDiscoverAttempts(1)
      .limitRetriesForOperationTo(0)
      .withOperationTimeout(5_000)
      .build();
  }

  it("says which address the certificate lacks and how the node can advertise another", async () => {
    const target = await startNode({ memDb: true, args: named.serverArgs });
    const client = new ChorusClient(byName(target));
    try {
      const error = await client
        .appendToStream("tls-name", jsonEvent({ type: "T", data: {} }))
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as Error).message).toMatch(
        /cannot connect to wss:\/\/127\.0\.0\.1:\d+\/: TLS: the node's certificate does not name 127\.0\.0\.1: .*--ext-host-advertise-as.*\(ERR_TLS_CERT_ALTNAME_INVALID\)/,
      );
    } finally {
      await client.close();
      await target.stop();
    }
  });

  it("connects once the node advertises the name its certificate holds, as the message says", async () => {
    const target = await startNode({
      memDb: true,
      args: [...named.serverArgs, "--ext-host-advertise-as", "localhost"],
    });
    const client = new ChorusClient(byName(target));
    try {
      const result = await client.appendToStream("tls-name", jsonEvent({ type: "T", data: {} }));
      expect(result.nextExpectedVersion).toBe(0n);
    } finally {
      await client.close();
      await target.stop();
    }
  });
});
