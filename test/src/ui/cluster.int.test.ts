// The admin UI's cluster page in a real headless Chromium against a real three-node cluster:
// one leader and two followers, and the page follows a leader kill.
import { getJson, startCluster, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromiumMissing, evalJs, launchBrowser, waitForJs, type TestBrowser } from "./browser.js";

interface Row {
  id: string;
  state: string;
  alive: boolean;
}

const ROWS = `[...document.querySelectorAll("tr[data-member]")].map((r) => ({
  id: r.dataset.member, state: r.dataset.state, alive: r.dataset.alive === "true" }))`;

describe.skipIf(chromiumMissing !== undefined)("admin UI cluster page (three nodes)", () => {
  let cluster: TestCluster;
  let browser: TestBrowser;

  beforeAll(async () => {
    cluster = await startCluster({ size: 3, memDb: true });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it("shows one leader and two followers, then follows a leader kill", async () => {
    const leader = await cluster.leader();
    const watcher = (leader + 1) % 3;
    const instanceOf = async (i: number): Promise<string> => {
      const n = cluster.nodes[i]!;
      const { body } = await getJson(`http://${n.httpEndpoint}/info`, 5_000);
      const info = body as { instanceId: string };
      return info.instanceId;
    };
    const leaderId = await instanceOf(leader);
    const node = cluster.nodes[watcher]!;
    const p = await browser.open(`http://${node.httpEndpoint}/ui/#/cluster`);

    await waitForJs(
      p.page,
      `(() => { const rows = ${ROWS};
        return rows.length === 3 && rows.every((r) => r.alive) &&
          rows.filter((r) => r.state === "Leader").length === 1 &&
          rows.filter((r) => r.state === "Follower").length === 2; })()`,
    );
    let rows = await evalJs<Row[]>(p.page, ROWS);
    expect(rows.find((r) => r.state === "Leader")?.id).toBe(leaderId);
    expect(
      await evalJs<string>(
        p.page,
        `document.querySelector("[data-testid=cluster-summary]").innerText`,
      ),
    ).toContain(`Leader ${leaderId.slice(0, 8)}`);
    await p.screenshot("cluster");
    // The subscriptions endpoint of a follower answers with the leader's groups (forwarded).
    const groups = await getJson(`http://${node.httpEndpoint}/subscriptions`, 5_000);
    expect(groups).toEqual({ status: 200, body: { subscriptions: [] } });

    await cluster.kill(leader);
    const newLeader = await cluster.leader({ timeoutMs: 20_000 });
    const newLeaderId = await instanceOf(newLeader);
    expect(newLeaderId).not.toBe(leaderId);
    // The page shows the new leader, and the old one as not alive.
    await waitForJs(
      p.page,
      `(() => { const rows = ${ROWS};
        const leaders = rows.filter((r) => r.alive && r.state === "Leader");
        const old = rows.find((r) => r.id === ${JSON.stringify(leaderId)});
        return leaders.length === 1 && leaders[0].id === ${JSON.stringify(newLeaderId)} &&
          (old === undefined || !old.alive); })()`,
      30_000,
    );
    rows = await evalJs<Row[]>(p.page, ROWS);
    expect(rows.filter((r) => r.alive && r.state === "Follower")).toHaveLength(1);
    await p.screenshot("cluster-after-leader-kill");
    expect(p.errors).toEqual([]);
    await p.page.close();
  });
});
