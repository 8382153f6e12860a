// resetSocket on real loopback sockets: a reset where one is possible, and never a descriptor
// left open (Node.js keeps one when a socket whose end is on its way out is reset).
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { resetSocket } from "./reset.js";

let server: Server | undefined;
const accepted: Socket[] = [];

afterEach(async () => {
  for (const s of accepted.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A connected client socket, and what its peer saw when the connection ended. */
async function connected(): Promise<{ client: Socket; peerEnd: Promise<string> }> {
  let peer!: (how: string) => void;
  const peerEnd = new Promise<string>((resolve) => (peer = resolve));
  let onAccepted!: () => void;
  const accept = new Promise<void>((resolve) => (onAccepted = resolve));
  server = createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.resume();
    s.on("error", (err: NodeJS.ErrnoException) => peer(err.code ?? "error"));
    s.on("end", () => peer("end"));
    onAccepted();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const client = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  // Both ends ready: the peer is listening for what the client does next.
  await Promise.all([once(client, "connect"), accept]);
  return { client, peerEnd };
}

/** Whether this process still holds `socket`'s handle (and its descriptor). */
function held(socket: Socket): boolean {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.includes(socket);
}

/** Whether `socket` closes within two seconds (a leaked handle never does). */
function closes(socket: Socket): Promise<boolean> {
  return Promise.race([
    once(socket, "close").then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref()),
  ]);
}

describe("resetSocket", () => {
  it("resets an open connection: the peer sees ECONNRESET", async () => {
    const { client, peerEnd } = await connected();
    const closed = closes(client);
    resetSocket(client);
    expect(await peerEnd).toBe("ECONNRESET");
    expect(await closed).toBe(true);
    expect(held(client)).toBe(false);
  });

  it("closes a socket whose end is on its way out, leaving no descriptor behind", async () => {
    const { client, peerEnd } = await connected();
    const errors: unknown[] = [];
    client.on("error", (err) => errors.push(err));
    const closed = closes(client);
    client.write("last words");
    client.end();
    // The same turn as end(): a plain resetAndDestroy() here fails with EINVAL and keeps the
    // descriptor open.
    resetSocket(client);
    expect(await closed).toBe(true);
    expect(held(client)).toBe(false);
    expect(await peerEnd).toBe("end");
    expect(errors).toEqual([]);
  });

  it("resets a socket whose end has gone out", async () => {
    const { client, peerEnd } = await connected();
    client.end();
    await once(client, "finish");
    expect(await peerEnd).toBe("end");
    const closed = closes(client);
    resetSocket(client);
    expect(await closed).toBe(true);
    expect(held(client)).toBe(false);
  });
});
