// The admin UI in a real headless Chromium against a real single node: the stream browser,
// the live tail of $all, persistent subscriptions (replay parked) and the stats charts, with
// no console errors on any page. Screenshots of each page go to docs/ui/.
import {
  ChorusClient,
  ConnectionSettings,
  jsonEvent,
  type PersistentSubscription,
} from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bodyText,
  chromiumMissing,
  evalJs,
  launchBrowser,
  textOf,
  texts,
  waitForJs,
  type TestBrowser,
} from "./browser.js";
import { nextEvent } from "../iterate.js";

/** The next event of a persistent subscription, with a deadline. */
/** Clicks the enabled button with this text. */
async function clickButton(page: Page, text: string): Promise<void> {
  await waitForJs(
    page,
    `[...document.querySelectorAll("button")].some((b) => b.innerText === ${JSON.stringify(text)} && !b.disabled)`,
  );
  await page.evaluate(
    `[...document.querySelectorAll("button")].find((b) => b.innerText === ${JSON.stringify(text)}).click()`,
  );
}

describe.skipIf(chromiumMissing !== undefined)("admin UI pages (single node)", () => {
  let node: TestNode;
  let client: ChorusClient;
  let browser: TestBrowser;
  let base: string;

  beforeAll(async () => {
    node = await startNode({ memDb: true });
    base = `http://${node.httpEndpoint}/ui/`;
    client = new ChorusClient(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withOperationTimeout(10_000)
        .build(),
    );
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await client?.close();
    await node?.stop();
  });

  it("the stream browser finds a stream by prefix and shows its events' JSON", async () => {
    await client.appendToStream("order-4711", [
      jsonEvent({ type: "OrderPlaced", data: { orderId: 4711, total: 99.5 } }),
      jsonEvent({ type: "OrderShipped", data: { orderId: 4711, carrier: "ACME" } }),
    ]);
    await client.appendToStream("customer-1", [jsonEvent({ type: "Registered", data: { id: 1 } })]);
    const p = await browser.open(`${base}#/streams`);
    await p.page.waitForSelector("input[name=prefix]");
    await waitForJs(p.page, `document.querySelector('tr[data-stream="customer-1"]') !== null`);
    await p.page.type("input[name=prefix]", "order-");
    await p.page.click("form button[type=submit]");
    await waitForJs(
      p.page,
      `document.querySelector('tr[data-stream="order-4711"]') !== null &&
       document.querySelector('tr[data-stream="customer-1"]') === null`,
    );
    await p.screenshot("streams");
    await p.page.click('tr[data-stream="order-4711"] a');
    await waitForJs(p.page, `document.querySelectorAll("article.event").length === 2`);
    expect(await textOf(p.page, "[data-testid=stream-name]")).toBe("order-4711");
    const json = (await texts(p.page, "pre[data-testid=event-data]")).map(
      (t) => JSON.parse(t) as unknown,
    );
    // Newest first.
    expect(json).toEqual([
      { orderId: 4711, carrier: "ACME" },
      { orderId: 4711, total: 99.5 },
    ]);
    expect(await bodyText(p.page)).toContain("OrderShipped");
    await p.screenshot("stream-events");
    expect(p.errors).toEqual([]);
    await p.page.close();
  });

  it("pages through a stream's events, 20 at a time", async () => {
    await client.appendToStream(
      "paged-1",
      Array.from({ length: 25 }, (_, n) => jsonEvent({ type: "Step", data: { n } })),
    );
    const p = await browser.open(`${base}#/streams/paged-1`);
    const shown = async (): Promise<number[]> =>
      (await texts(p.page, "pre[data-testid=event-data]")).map(
        (t) => (JSON.parse(t) as { n: number }).n,
      );
    await waitForJs(p.page, `document.querySelectorAll("article.event").length === 20`);
    expect(await shown()).toEqual(Array.from({ length: 20 }, (_, i) => 24 - i));
    await clickButton(p.page, "Older");
    await waitForJs(p.page, `document.querySelectorAll("article.event").length === 5`);
    expect(await shown()).toEqual([4, 3, 2, 1, 0]);
    await clickButton(p.page, "Newer");
    await waitForJs(p.page, `document.querySelectorAll("article.event").length === 20`);
    expect((await shown())[0]).toBe(24);
    expect(p.errors).toEqual([]);
    await p.page.close();
  });

  it("the live tail of $all shows events appended while it is open", async () => {
    const p = await browser.open(`${base}#/tail`);
    await waitForJs(p.page, `document.body.innerText.includes("order-4711")`);
    await client.appendToStream("tail-live", [
      jsonEvent({ type: "Appended", data: { live: "yes-tail" } }),
    ]);
    await waitForJs(p.page, `document.body.innerText.includes("yes-tail")`);
    // The newest event is on top.
    expect(await textOf(p.page, "table.tail tbody tr td:nth-child(2)")).toBe("tail-live");
    await p.screenshot("tail");
    expect(p.errors).toEqual([]);
    await p.page.close();
  });

  it("replays parked events from the subscriptions page", async () => {
    const ps = client.persistentSubscriptions;
    await client.appendToStream("invoice-1", [
      jsonEvent({ type: "InvoiceIssued", data: { n: 0 } }),
      jsonEvent({ type: "InvoiceIssued", data: { n: 1 } }),
    ]);
    await ps.create("invoice-1", "billing", { startFrom: "start" });
    const sub: PersistentSubscription = ps.subscribe("invoice-1", "billing", { bufferSize: 10 });
    const it = sub[Symbol.asyncIterator]();
    try {
      await sub.ack(await nextEvent(it));
      const poison = await nextEvent(it);
      expect((poison.event.data as { n: number }).n).toBe(1);
      await sub.nack("park", "cannot bill", poison);
      await waitFor(async () => (await ps.getInfo("invoice-1", "billing")).parkedCount === 1, {
        message: "the event is parked",
      });

      const p = await browser.open(`${base}#/subscriptions`);
      const parkedCell = `tr[data-group="invoice-1/billing"] td[data-testid=parked]`;
      await waitForJs(p.page, `document.querySelector('${parkedCell}')?.textContent === "1"`);
      await p.screenshot("subscriptions");
      await p.page.click('tr[data-group="invoice-1/billing"] a');
      await waitForJs(
        p.page,
        `document.querySelector("[data-testid=parked-count]")?.textContent === "1"`,
      );
      // One consumer connected.
      await waitForJs(p.page, `document.querySelectorAll("table tbody tr").length >= 1`);
      await p.screenshot("subscription-group");
      await p.page.click("[data-testid=replay-parked]");
      await waitForJs(
        p.page,
        `document.querySelector("[data-testid=replay-result]")?.textContent.includes("Replaying 1 parked event")`,
      );
      // The parked event comes back to the consumer.
      const replayed = await nextEvent(it);
      expect((replayed.event.data as { n: number }).n).toBe(1);
      await sub.ack(replayed);
      await waitForJs(
        p.page,
        `document.querySelector("[data-testid=parked-count]")?.textContent === "0"`,
      );
      expect((await ps.getInfo("invoice-1", "billing")).parkedCount).toBe(0);
      expect(p.errors).toEqual([]);
      await p.page.close();
    } finally {
      await sub.unsubscribe();
    }
  });

  it("charts the node's append rate and latency from its own metrics", async () => {
    const p = await browser.open(`${base}#/stats`);
    await waitForJs(p.page, `document.querySelectorAll("figure.chart canvas").length === 2`);
    // Appends while the page samples /stats each second, until the charts have a few
    // intervals with appends in them.
    let i = 0;
    await waitFor(
      async () => {
        await client.appendToStream(`stats-${i % 3}`, [jsonEvent({ type: "Tick", data: { i } })]);
        i++;
        return evalJs<boolean>(
          p.page,
          `(() => { const s = document.querySelector("section[data-intervals]")?.dataset;
            return Number(s?.maxEventsRate) > 0 && Number(s?.intervals) >= 6; })()`,
        );
      },
      { timeoutMs: 20_000, intervalMs: 50, message: "six sampled intervals, with appends" },
    );
    const cards = await evalJs<Record<string, string>>(
      p.page,
      `Object.fromEntries([...document.querySelectorAll("dl.cards > div")].map((c) => [c.querySelector("dt").textContent, c.querySelector("dd").textContent]))`,
    );
    expect(Number(cards["Events written"]?.replace(/,/g, ""))).toBeGreaterThan(0);
    await p.screenshot("stats");
    expect(p.errors).toEqual([]);
    await p.page.close();
  });

  it("shows the cluster page of a single node with no console errors", async () => {
    const p = await browser.open(base);
    await waitForJs(p.page, `document.querySelectorAll("tr[data-state=Leader]").length === 1`);
    expect(
      await evalJs<number>(p.page, `document.querySelectorAll("tr[data-member]").length`),
    ).toBe(1);
    expect(p.errors).toEqual([]);
    await p.page.close();
  });
});
