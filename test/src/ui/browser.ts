/**
 * A real headless Chromium (Debian's `chromium` at /usr/bin/chromium, installed by .ci/run)
 * driven with puppeteer-core, for the admin UI tests. Each browser gets a fresh temp profile,
 * removed when it closes.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer, { type Browser, type HTTPResponse, type Page } from "puppeteer-core";

export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Why the UI tests are skipped here, or undefined when Chromium is installed. */
export const chromiumMissing: string | undefined = existsSync(CHROMIUM_PATH)
  ? undefined
  : `${CHROMIUM_PATH} is missing (apt-get install chromium): the admin UI browser tests are skipped`;

if (chromiumMissing !== undefined) console.warn(chromiumMissing);

/** Where the docs' screenshots go (docs/ui/), when CHORUS_UI_SCREENSHOTS=1. */
export const SCREENSHOT_DIR = fileURLToPath(new URL("../../../docs/ui/", import.meta.url));

export interface TestBrowser {
  readonly browser: Browser;
  /** Opens a page that records console errors, page errors and every answer it got. */
  open(url: string): Promise<TestPage>;
  close(): Promise<void>;
}

export interface TestPage {
  readonly page: Page;
  /** Console messages of type error, uncaught exceptions and failed requests, as text. */
  readonly errors: string[];
  /** Every HTTP answer the page got: method, URL path and status. */
  readonly responses: { method: string; path: string; status: number }[];
  /** Writes docs/ui/NAME.png when CHORUS_UI_SCREENSHOTS=1 (to refresh the docs); else nothing. */
  screenshot(name: string): Promise<void>;
}

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export async function launchBrowser(): Promise<TestBrowser> {
  const profile = await mkdtemp(path.join(tmpdir(), "chorus-ui-chromium-"));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ARGS,
      userDataDir: profile,
      defaultViewport: { width: 1280, height: 800 },
      timeout: 30_000,
      protocolTimeout: 30_000,
    });
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  let closed = false;
  return {
    browser,
    async open(url) {
      const page = await browser.newPage();
      page.setDefaultTimeout(15_000);
      const errors: string[] = [];
      const responses: TestPage["responses"] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => errors.push(`page error: ${String(e)}`));
      page.on("requestfailed", (r) => {
        // Requests the page aborts itself (leaving a page cancels its polls) are not failures.
        const failure = r.failure()?.errorText ?? "";
        if (failure !== "net::ERR_ABORTED") errors.push(`request failed: ${r.url()} ${failure}`);
      });
      page.on("response", (r: HTTPResponse) => {
        const u = new URL(r.url());
        responses.push({ method: r.request().method(), path: u.pathname, status: r.status() });
      });
      await page.goto(url, { waitUntil: "domcontentloaded" });
      return {
        page,
        errors,
        responses,
        async screenshot(name) {
          // Only on request: a test run must not rewrite files of the repository.
          if (process.env.CHORUS_UI_SCREENSHOTS !== "1") return;
          await mkdir(SCREENSHOT_DIR, { recursive: true });
          await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await browser.close();
      } finally {
        await rm(profile, { recursive: true, force: true });
      }
    },
  };
}

// The test workspace compiles without the DOM library, so what runs in the page is given as
// JavaScript source text.

/** The page's visible text. */
export async function bodyText(page: Page): Promise<string> {
  return evalJs<string>(page, "document.body.innerText");
}

/** Evaluates a JavaScript expression in the page and returns its (JSON-able) value. */
export async function evalJs<T>(page: Page, expression: string): Promise<T> {
  return (await page.evaluate(expression)) as T;
}

/** Waits until a JavaScript expression is truthy in the page (default deadline 15,000 ms). */
export async function waitForJs(page: Page, expression: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(expression, { timeout: timeoutMs, polling: 50 });
}

/** The trimmed text of every element matching a selector, in document order. */
export async function texts(page: Page, selector: string): Promise<string[]> {
  return evalJs<string[]>(
    page,
    `[...document.querySelectorAll(${JSON.stringify(selector)})].map((e) => e.innerText.trim())`,
  );
}

/** The trimmed text of the first element matching a selector, or null. */
export async function textOf(page: Page, selector: string): Promise<string | null> {
  return evalJs<string | null>(
    page,
    `document.querySelector(${JSON.stringify(selector)})?.innerText.trim() ?? null`,
  );
}
