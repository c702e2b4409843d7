// Debian's Chromium driven by playwright-core (no browser download), one isolated context
// per user, and screenshots of every step in test-artifacts/e2e/.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { repo } from './concord.mjs';

export const artifacts = path.join(repo, 'test-artifacts', 'e2e');

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** Save a screenshot of the page as test-artifacts/e2e/<name>.png. */
export async function shot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
}

/** A new context (own cookies) logged in as `user` through the login form. */
export async function loginAs(browser, server, user, password, { next = 'lab', label = user, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport || { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(server.base + next);
  await page.waitForSelector('form input[name="password"]');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await shot(page, `${label}-01-login`);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  return { context, page };
}

/** Wait until JupyterLab has started (its shell and file browser are there). */
export async function waitForLab(page) {
  await page.waitForSelector('#jp-main-dock-panel', { timeout: 60_000 });
  await page.waitForSelector('.jp-DirListing-content', { state: 'attached', timeout: 60_000 });
}

/** Wait until the current notebook's kernel is connected and idle (status bar). */
export async function waitForKernelIdle(page) {
  await page.waitForSelector('.jp-StatusBar-Widget:has-text("| Idle")', { timeout: 90_000 });
}

/** Close JupyterLab's "get notified about news?" toast, if shown, so it hides nothing. */
export async function dismissNews(page) {
  const no = page.locator('.jp-toastContainer button:has-text("No")').first();
  // It appears a moment after start-up; its absence is fine.
  if (await no.waitFor({ timeout: 5000 }).then(() => true, () => false)) await no.click().catch(() => {});
}

/** Wait until `locator` has slid fully into the window (toasts animate in), for a screenshot. */
export async function settled(locator) {
  await locator.evaluate((el) => new Promise((resolve) => {
    const check = () => {
      const r = el.getBoundingClientRect();
      if (r.right <= window.innerWidth && r.bottom <= window.innerHeight && el.getAnimations().length === 0) resolve();
      else requestAnimationFrame(check);
    };
    check();
  }));
}

/**
 * In the open notebook at `path` (not writable for this user): Ctrl+S shows JupyterLab's
 * read-only warning, and "Save As" to `copyPath` shows the server's refusal; neither writes.
 * Screenshots `<label>-save.png` and `<label>-save-as.png`.
 */
export async function expectSaveRefused(page, server, path, copyPath, label) {
  await page.locator('.jp-NotebookPanel :text("notebook is read-only")').waitFor();
  await page.keyboard.press('Control+s');
  const toast = page.locator('.jp-toastContainer .Toastify__toast:has-text("is read-only")');
  await toast.waitFor({ timeout: 30_000 });
  assert.ok((await toast.textContent()).includes(`${path} is read-only`), await toast.textContent());
  await settled(toast);
  await shot(page, `${label}-save`);
  await page.keyboard.press('Control+Shift+s');
  await page.locator('.jp-Dialog input').waitFor();
  await page.fill('.jp-Dialog input', copyPath);
  await page.click('.jp-Dialog button.jp-mod-accept');
  const error = page.locator('.jp-Dialog:has-text("File Save Error")');
  await error.waitFor({ timeout: 30_000 });
  assert.match(await error.textContent(), /not authorized to write on resource: contents:/);
  await shot(page, `${label}-save-as`);
  await page.click('.jp-Dialog button:has-text("Close")');
  assert.ok(!fs.existsSync(server.file(copyPath)), `no ${copyPath} was written`);
}

/** Poll `fn` until it returns a truthy value (for things outside the page, like files). */
export async function eventually(fn, what, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`gave up waiting for ${what}`);
}
