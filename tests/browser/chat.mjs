// Drives the chat example's page (`GET /chat`) in headless Chromium with playwright-core, as two
// people would: both join one room, the first sees the second's join notice, each sends a
// message (one with the Send button, one with Enter) and each sees both with the right sender,
// then the second closes their page and the first sees the leave notice. Saves screenshots and
// prints one JSON summary line on stdout; exits 0 only if every step passed.
//
// Run by tests/tests/browser/main.rs, which sets:
//   CHAT_URL        the page, e.g. http://127.0.0.1:40123/chat
//   CHAT_ROOM       the room both pages join
//   CHAT_NAMES      two names, comma-separated: the first stays, the second leaves
//   SCREENSHOT_DIR  where to save chat-<first name>.png and chat-<second name>.png
//   PLAYWRIGHT_DIR  the folder whose node_modules holds playwright-core (tests/browser/setup.sh)
//   CHROMIUM        the browser to drive (Debian's /usr/bin/chromium)
// and, for the page over HTTPS:
//   CHROMIUM_EXTRA_ARGS  more flags, space-separated (the test certificate's SPKI pin)
//   SCREENSHOT_PREFIX    the screenshots' name before -<name>.png (default: chat)
import { createRequire } from 'node:module';
import path from 'node:path';

/** The longest any one step (a click, a notice appearing) may take. */
const STEP_TIMEOUT_MS = 10_000;
/** The longest Chromium may take to start. */
const LAUNCH_TIMEOUT_MS = 20_000;
/** The whole script's bound: it reports and exits past it, whatever it is waiting for. */
const WATCHDOG_MS = 45_000;
/**
 * Headless, no sandbox (CI runs as root), and nothing that reaches out to the network: this
 * machine's closed network refuses Chromium's background connections. Playwright adds
 * --headless itself and gives each launch a fresh, temporary user-data-dir.
 */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const VIEWPORT = { width: 900, height: 700 };

const summary = {
  ok: false,
  step: 'setup',
  error: null,
  chromium: null,
  room: null,
  pages: {},
  screenshots: {},
  failureScreenshots: {},
  pageErrors: [],
  consoleErrors: [],
  elapsedMs: 0,
};
const started = Date.now();
let browser = null;
/** The pages still open, by name, for a screenshot if a step fails. */
const openPages = new Map();
let screenshotDir = null;
const screenshotPrefix = process.env.SCREENSHOT_PREFIX || 'chat';

function report(code) {
  summary.elapsedMs = Date.now() - started;
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(code);
}

const watchdog = setTimeout(() => {
  summary.error = `the script ran past ${WATCHDOG_MS} ms (at step "${summary.step}")`;
  // Chromium is a child process: without this it would outlive the script.
  browser?.close().catch(() => {});
  setTimeout(() => report(2), 1_000).unref();
}, WATCHDOG_MS);
watchdog.unref();

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** What one page shows: its status line, and the text of every message and notice. */
async function pageState(page) {
  return page.evaluate(() => {
    const texts = (selector) =>
      [...document.querySelectorAll(selector)].map((element) => element.textContent.trim());
    return {
      status: document.querySelector('#status')?.textContent.trim() ?? null,
      messages: texts('.msg'),
      notices: texts('.notice'),
    };
  });
}

/** Waits until the element `selector` shows a text containing every one of `parts`. */
async function waitForText(page, selector, parts) {
  let locator = page.locator(selector);
  for (const part of parts) locator = locator.filter({ hasText: part });
  await locator.first().waitFor({ state: 'visible' });
}

/** Waits until `#status` reads exactly `connected`. */
async function waitConnected(page) {
  await page.waitForFunction(
    () => document.querySelector('#status')?.textContent.trim() === 'connected',
  );
}

/** Opens a page in a context of its own (its own cookies and storage, like another person). */
async function openPage(name, url) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (error) => summary.pageErrors.push(`${name}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') summary.consoleErrors.push(`${name}: ${message.text()}`);
  });
  openPages.set(name, page);
  page.on('close', () => openPages.delete(name));
  await page.goto(url, { timeout: STEP_TIMEOUT_MS });
  // The protocol the page itself came over (`h2`, `http/1.1`), as the browser reports it.
  summary.protocols = summary.protocols ?? {};
  summary.protocols[name] = await page.evaluate(
    () => performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? null,
  );
  return { context, page };
}

async function join(page, name, room) {
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join');
  await waitConnected(page);
}

async function main() {
  const url = required('CHAT_URL');
  const room = required('CHAT_ROOM');
  const [first, second] = required('CHAT_NAMES').split(',');
  if (!first || !second) throw new Error('CHAT_NAMES must name two people');
  screenshotDir = required('SCREENSHOT_DIR');
  const require = createRequire(path.resolve(required('PLAYWRIGHT_DIR'), 'package.json'));
  const { chromium } = require('playwright-core');
  summary.room = room;
  const textOf = (name) => `hello from ${name}`;

  summary.step = 'launch chromium';
  browser = await chromium.launch({
    executablePath: required('CHROMIUM'),
    headless: true,
    args: [...CHROMIUM_ARGS, ...(process.env.CHROMIUM_EXTRA_ARGS ?? '').split(' ').filter(Boolean)],
    timeout: LAUNCH_TIMEOUT_MS,
  });
  summary.chromium = browser.version();

  summary.step = `${first} opens the page and joins`;
  const one = await openPage(first, url);
  await join(one.page, first, room);

  summary.step = `${second} opens the page and joins`;
  const two = await openPage(second, url);
  await join(two.page, second, room);

  summary.step = `${first} sees ${second}'s join notice`;
  await waitForText(one.page, '.notice', [second, 'joined']);

  summary.step = `${first} sends with the Send button`;
  await one.page.fill('#text', textOf(first));
  await one.page.click('#send');
  // Both see it before the second message goes, so every member gets them in this order.
  for (const { page } of [one, two]) {
    await waitForText(page, '.msg', [`${first}: ${textOf(first)}`]);
  }

  summary.step = `${second} sends with Enter`;
  await two.page.fill('#text', textOf(second));
  await two.page.press('#text', 'Enter');
  for (const { page } of [one, two]) {
    await waitForText(page, '.msg', [`${second}: ${textOf(second)}`]);
  }

  summary.step = `screenshot of ${second}'s page`;
  summary.pages[second] = await pageState(two.page);
  summary.screenshots[second] = path.join(screenshotDir, `${screenshotPrefix}-${second}.png`);
  await two.page.screenshot({ path: summary.screenshots[second], fullPage: true });

  summary.step = `${second} closes the page; ${first} sees the leave notice`;
  await two.context.close();
  await waitForText(one.page, '.notice', [second, 'left']);

  summary.step = `screenshot of ${first}'s page`;
  summary.pages[first] = await pageState(one.page);
  summary.screenshots[first] = path.join(screenshotDir, `${screenshotPrefix}-${first}.png`);
  await one.page.screenshot({ path: summary.screenshots[first], fullPage: true });

  summary.step = 'done';
  summary.ok = true;
}

try {
  await main();
} catch (error) {
  summary.error = String(error?.message ?? error);
  // What each open page showed when the step failed, to see why.
  for (const [name, page] of openPages) {
    const file = path.join(screenshotDir ?? '.', `${screenshotPrefix}-${name}-failed.png`);
    try {
      summary.pages[name] ??= await pageState(page);
      await page.screenshot({ path: file, fullPage: true, timeout: STEP_TIMEOUT_MS });
      summary.failureScreenshots[name] = file;
    } catch {
      // The failure itself is what matters; a page that cannot be captured adds nothing.
    }
  }
} finally {
  await browser?.close().catch(() => {});
}
report(summary.ok ? 0 : 1);
