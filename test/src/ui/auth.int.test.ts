// The admin UI with authentication on, in a real headless Chromium: the page is served, asks
// for credentials in its own form, shows no stream data and gets no data from the node before
// a successful login; a wrong password is refused in the form.
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bodyText,
  chromiumMissing,
  launchBrowser,
  textOf,
  waitForJs,
  type TestBrowser,
} from "./browser.js";

const PASSWORD = "ui test password";
const SECRET_STREAM = "payroll-secret-7f3a";
const SECRET_DATA = "salary-of-everyone-19283";

/** Answers of the node's data endpoints (anything but the UI's own files). */
function dataAnswers(
  responses: { path: string; status: number }[],
): { path: string; status: number }[] {
  return responses.filter((r) => !r.path.startsWith("/ui/"));
}

describe.skipIf(chromiumMissing !== undefined)("admin UI with authentication on", () => {
  let node: TestNode;
  let browser: TestBrowser;

  beforeAll(async () => {
    node = await startNode({ memDb: true, adminPassword: PASSWORD });
    const client = new ChorusClient(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withDefaultCredentials({ username: "admin", password: PASSWORD })
        .build(),
    );
    try {
      await client.appendToStream(SECRET_STREAM, [
        jsonEvent({ type: "Paid", data: { note: SECRET_DATA } }),
      ]);
    } finally {
      await client.close();
    }
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await node?.stop();
  });

  it("shows only a login form and gets no data before login", async () => {
    // Straight to the stream's page: still only the form.
    const p = await browser.open(
      `http://${node.httpEndpoint}/ui/#/streams/${encodeURIComponent(SECRET_STREAM)}`,
    );
    await p.page.waitForSelector("[data-testid=login-form]");
    const before = await bodyText(p.page);
    expect(before).toContain("Sign in");
    expect(before).not.toContain(SECRET_STREAM);
    expect(before).not.toContain(SECRET_DATA);
    expect(await p.page.$("nav")).toBeNull();
    // The page asked the node for nothing but its own files and whether to ask for credentials.
    expect(dataAnswers(p.responses)).toEqual([]);
    await p.screenshot("login");

    // A wrong password: refused in the form, still nothing shown.
    await p.page.type("input[name=password]", "not the password");
    await p.page.click("form button[type=submit]");
    await waitForJs(p.page, `document.querySelector("[data-testid=login-error]") !== null`);
    expect(await textOf(p.page, "[data-testid=login-error]")).toBe("Wrong username or password.");
    expect(await bodyText(p.page)).not.toContain(SECRET_DATA);
    const refused = dataAnswers(p.responses);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.status === 401)).toBe(true);
    // Chromium reports the refused request itself as a console error; nothing else.
    expect(p.errors.filter((e) => !e.includes("401"))).toEqual([]);
    const refusedErrors = p.errors.length;

    // The right password: the stream's events show.
    await p.page.click("input[name=password]", { count: 3 });
    await p.page.keyboard.press("Backspace");
    await p.page.type("input[name=password]", PASSWORD);
    await p.page.click("form button[type=submit]");
    await waitForJs(p.page, `document.body.innerText.includes(${JSON.stringify(SECRET_DATA)})`);
    expect(await textOf(p.page, "[data-testid=stream-name]")).toBe(SECRET_STREAM);
    expect(p.errors.length).toBe(refusedErrors);

    // Signing out forgets the credentials: the form again, the data gone.
    await p.page.click("button.link");
    await p.page.waitForSelector("[data-testid=login-form]");
    expect(await bodyText(p.page)).not.toContain(SECRET_DATA);
    await p.page.close();
  });

  it("a fresh page needs the credentials again (they are kept in memory only)", async () => {
    const p = await browser.open(`http://${node.httpEndpoint}/ui/#/streams`);
    await p.page.waitForSelector("[data-testid=login-form]");
    expect(dataAnswers(p.responses)).toEqual([]);
    expect(await bodyText(p.page)).not.toContain(SECRET_STREAM);
    expect(p.errors).toEqual([]);
    await p.page.close();
  });
});
