/// <reference lib="dom" />
/**
 * Drives Debian's Chromium (`/usr/bin/chromium`, installed with apt) through
 * `playwright-core` for the dashboard tests: sign in with a one-time login
 * URL, collect console errors, write screenshots to `.ci/out/screenshots/`,
 * and check layout through the DOM (no horizontal overflow, a label on every
 * control). Playwright never downloads a browser here.
 *
 * @example
 * ```ts
 * await using b = await openBrowser();
 * const page = await b.signIn(agent.url, { width: 390, height: 844 });
 * ```
 */
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { api, eventually, ROOT } from "./harness.ts";

/** Where screenshots go (CI keeps `.ci/out/`). */
export const SCREENSHOT_DIR = join(ROOT, ".ci", "out", "screenshots");
/** The two widths every screen must work at. */
export const WIDE = { width: 1280, height: 900 };
export const NARROW = { width: 390, height: 844 };

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** A browser and the console errors of every page it opened. */
export class TestBrowser implements AsyncDisposable {
  readonly browser: Browser;
  /** `console.error` messages and uncaught page errors, with the page URL. */
  readonly consoleErrors: string[] = [];

  private constructor(browser: Browser) {
    this.browser = browser;
  }

  /** Launches Chromium; throws a clear error when it is not installed. */
  static async open(): Promise<TestBrowser> {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    }
    return new TestBrowser(
      await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true }),
    );
  }

  /** A new page (own cookie jar) at `viewport`, its errors collected. */
  async newPage(viewport: { width: number; height: number }): Promise<Page> {
    const context = await this.browser.newContext({ viewport });
    const page = await context.newPage();
    page.on("console", (msg) => {
      if (msg.type() === "error") this.consoleErrors.push(`${page.url()}: ${msg.text()}`);
    });
    page.on("pageerror", (err) => this.consoleErrors.push(`${page.url()}: ${err.message}`));
    return page;
  }

  /** A new page signed in to the agent at `agentUrl` through a fresh one-time login URL. */
  async signIn(agentUrl: string, viewport: { width: number; height: number }): Promise<Page> {
    const minted = await api(agentUrl, "POST", "/api/login-codes");
    if (minted.status !== 201) throw new Error(`login code: ${JSON.stringify(minted.body)}`);
    const page = await this.newPage(viewport);
    await page.goto(minted.body.url);
    await page.waitForSelector("#app header", { timeout: 10_000 });
    return page;
  }

  /**
   * Console errors other than the network lines Chromium prints for the
   * refusals a test provoked on purpose (`Failed to load resource: … status
   * of 400`); pass the statuses expected.
   */
  unexpectedErrors(expectedStatuses: number[] = []): string[] {
    return this.consoleErrors.filter((line) =>
      !expectedStatuses.some((s) =>
        line.includes(`Failed to load resource: the server responded with a status of ${s}`)
      )
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.browser.close();
  }
}

/** Opens a browser for one test. */
export function openBrowser(): Promise<TestBrowser> {
  return TestBrowser.open();
}

/** Goes to a dashboard screen by its hash and waits for its heading. */
export async function goTo(page: Page, hash: string, heading: string | RegExp): Promise<void> {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.getByRole("heading", { level: 1, name: heading }).waitFor({ timeout: 10_000 });
}

/** Writes a full-page screenshot `name-<width>.png`; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(SCREENSHOT_DIR, { recursive: true });
  const width = page.viewportSize()?.width ?? 0;
  const path = join(SCREENSHOT_DIR, `${name}-${width}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Layout problems on the current screen: horizontal overflow of the page,
 * and form controls (inputs, selects, text areas, buttons) without an
 * accessible name. Empty when all is well.
 */
export function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const problems: string[] = [];
    const doc = document.documentElement;
    if (doc.scrollWidth > doc.clientWidth) {
      const wide = [...document.querySelectorAll<HTMLElement>("body *")]
        .filter((el) => el.getBoundingClientRect().right > doc.clientWidth + 1)
        .slice(0, 3)
        .map((el) => `${el.tagName.toLowerCase()}.${el.className}`);
      problems.push(
        `page is ${doc.scrollWidth}px wide in ${doc.clientWidth}px: ${wide.join(", ")}`,
      );
    }
    for (const el of document.querySelectorAll<HTMLElement>("input, select, textarea, button")) {
      const control = el as HTMLInputElement;
      const labelled = (control.labels?.length ?? 0) > 0 ||
        !!el.getAttribute("aria-label")?.trim() || !!el.getAttribute("aria-labelledby") ||
        (el.tagName === "BUTTON" && !!el.textContent?.trim());
      if (!labelled) problems.push(`unlabelled ${el.tagName.toLowerCase()}#${el.id}`);
    }
    return problems;
  });
}

/** `text` as a file for `setInputFiles` (an upload from memory, named `name`). */
export function upload(
  name: string,
  text: string,
): { name: string; mimeType: string; buffer: Buffer } {
  return { name, mimeType: "application/x-pem-file", buffer: Buffer.from(text) };
}

/**
 * Fills the join form (mesh name, hub address, the three files picked as
 * uploads named ca.crt, me.crt and me.key) and submits it once the form has
 * read all three files into its text areas.
 */
export async function submitJoinForm(
  page: Page,
  mesh: string,
  hub: string,
  files: { ca: string; certificate: string; privateKey: string },
): Promise<void> {
  await page.getByLabel("Mesh name").fill(mesh);
  await page.getByLabel("Hub addresses").fill(hub);
  await page.locator("#join-ca-file").setInputFiles(upload("ca.crt", files.ca));
  await page.locator("#join-certificate-file").setInputFiles(upload("me.crt", files.certificate));
  await page.locator("#join-privateKey-file").setInputFiles(upload("me.key", files.privateKey));
  for (const slot of ["ca", "certificate", "privateKey"] as const) {
    await eventually(
      async () => (await page.locator(`#join-${slot}-text`).inputValue()) === files[slot],
      5_000,
      `the ${slot} file read into the form`,
    );
  }
  await page.getByRole("button", { name: "Join mesh" }).click();
}
