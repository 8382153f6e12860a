// The client against a node serving TLS: it connects when it trusts the CA, and a TLS
// failure is reported as a TLS failure, not as "connection refused" or a timeout.
import { ChorusClient, ConnectionSettings, DiscoveryError, jsonEvent } from "@chorus/client";
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

  it("reports an untrusted certificate as a TLS failure", async () => {
    const client = new ChorusClient(settings({}));
    try {
      const error = await client.connect().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(DiscoveryError);
      const causes = (error as DiscoveryError).causes.map((c) => c.error.message).join("\n");
      expect(causes).toMatch(/TLS|certificate/i);
      expect(causes).not.toMatch(/refused/i);
    } finally {
      await client.close();
    }
  });

  it("reports a plain-text client talking to a TLS node clearly", async () => {
    const client = new ChorusClient(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withMaxDiscoverAttempts(1)
        .build(),
    );
    try {
      const error = await client.connect().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(DiscoveryError);
      expect((error as DiscoveryError).causes.length).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });
});
