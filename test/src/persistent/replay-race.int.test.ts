// A replay of parked events asked for right after an event was parked: the group counts the
// parked event once its copy is written, and holds it until its acks record is written too.
// A replay that reads the parked stream in between must offer it all the same, not move the
// parked stream's start past it unreplayed. The acks record's write is held here (a node in
// this process, its store's append wrapped) so that the replay lands in between every time.
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { createNode, type ChorusNode } from "@chorus/server";
import { waitFor } from "@chorus/testing";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { nextEvent } from "../iterate.js";

let node: ChorusNode | undefined;
let client: ChorusClient | undefined;
let dir: string | undefined;

afterEach(async () => {
  await client?.close();
  await node?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  client = node = dir = undefined;
});

describe("replaying parked events", () => {
  it("offers an event parked a moment ago, while its acks record is still being written", async () => {
    dir = await mkdtemp(join(tmpdir(), "chorus-replay-race-"));
    node = await createNode({ db: dir, listen: false, logLevel: "silent" });
    client = new ChorusClient(
      ConnectionSettings.create().withInProcessNode(node).withOperationTimeout(20_000).build(),
    );
    const ps = client.persistentSubscriptions;
    await client.appendToStream("parked-race", jsonEvent({ type: "Test", data: { n: 1 } }));
    await ps.create("parked-race", "g");
    const sub = ps.subscribe("parked-race", "g", { bufferSize: 10 });
    const it = sub[Symbol.asyncIterator]();
    const first = await nextEvent(it);

    // Writes to the group's acks stream wait for `release` from here on.
    const store = node.store;
    const append = store.append.bind(store);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    store.append = async (streamId, expected, events) => {
      if (streamId.endsWith("-acks")) {
        held++;
        await released;
      }
      return append(streamId, expected, events);
    };
    let parked: Promise<void> | undefined;
    try {
      // Confirmed once the park's acks record is written: after the release.
      parked = sub.nack("park", "poison", first);
      await waitFor(async () => (await ps.getInfo("parked-race", "g")).parkedCount === 1, {
        timeoutMs: 10_000,
        message: "the event parked",
      });
      expect(held).toBeGreaterThan(0);
      // The replay is asked for while the acks record of the park is held; the record is let
      // through 100 ms later. That is the fault's window, not a wait for anything: a node
      // that replays at once (the bug) reads the parked stream well inside it, and a correct
      // one waits for the record however long it is held.
      const replay = ps.replayParked("parked-race", "g");
      setTimeout(release, 100);
      await replay;
      await parked;
    } finally {
      release();
      store.append = append;
      await parked?.catch(() => undefined);
    }
    const replayed = await nextEvent(it);
    expect(replayed.event.id).toBe(first.event.id);
    await sub.ack(replayed);
    await waitFor(async () => (await ps.getInfo("parked-race", "g")).parkedCount === 0, {
      timeoutMs: 10_000,
      message: "the replay done",
    });
    await sub.unsubscribe();
  });
});
