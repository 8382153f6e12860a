import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createNode, StartupError } from "./node.js";
import type { StreamStore } from "./streams/types.js";

describe("createNode", () => {
  it("refuses a cluster node a given store that is no ReplicatedLog, before opening it", async () => {
    let opened = false;
    const store = {
      open: () => {
        opened = true;
        return Promise.resolve();
      },
    } as unknown as StreamStore;
    const started = createNode(
      {
        memDb: true,
        insecure: true,
        clusterSize: 3,
        gossipSeed: ["127.0.0.1:2113"],
        discoverViaDns: false,
        extTcpPort: 0,
        extHttpPort: 0,
        intTcpPort: 0,
        intHttpPort: 0,
      },
      { store, logger: pino({ level: "silent" }) },
    );
    await expect(started).rejects.toThrow(StartupError);
    await expect(started).rejects.toThrow(
      "a cluster node needs a LogStore (created with autoCommit: false)",
    );
    expect(opened).toBe(false);
  });
});
