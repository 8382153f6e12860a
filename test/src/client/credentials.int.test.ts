// A node that takes requests only with credentials: the client's errors say what is missing
// or wrong, naming the user (never the password), and the right credentials work.
import { ChorusClient, NotAuthenticatedError, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const PASSWORD = "s3cret-pass";
let node: TestNode;

beforeAll(async () => {
  node = await startNode({ memDb: true, adminPassword: PASSWORD });
});

afterAll(async () => {
  await node?.stop();
});

/** The connection string of the node with `userinfo` ("user:password@") in front of its host. */
function connectionString(userinfo: string): string {
  return node.connectionString.replace("chorus://", `chorus://${userinfo}`);
}

async function appendError(userinfo: string): Promise<unknown> {
  const client = new ChorusClient(connectionString(userinfo));
  try {
    return await client.appendToStream("secured", jsonEvent({ type: "T", data: {} })).then(
      () => undefined,
      (err: unknown) => err,
    );
  } finally {
    await client.close();
  }
}

describe("credentials", () => {
  it("without credentials: says the node wants a username and password, and where they go", async () => {
    const error = await appendError("");
    expect(error).toBeInstanceOf(NotAuthenticatedError);
    expect((error as Error).message).toMatch(
      /only with a username and password.*user:password@ in the connection string or withDefaultCredentials/,
    );
  });

  it("with a wrong password: names the user whose credentials were refused, not the password", async () => {
    const error = await appendError("admin:wrong-pass@");
    expect(error).toBeInstanceOf(NotAuthenticatedError);
    expect((error as Error).message).toMatch(
      /refused the credentials of user "admin" \(HTTP 401\): wrong username or password/,
    );
    expect((error as Error).message).not.toContain("wrong-pass");
  });

  it("with the right credentials: appends", async () => {
    const client = new ChorusClient(connectionString(`admin:${PASSWORD}@`));
    try {
      const result = await client.appendToStream("secured", jsonEvent({ type: "T", data: {} }));
      expect(result.nextExpectedVersion).toBe(0n);
    } finally {
      await client.close();
    }
  });
});
