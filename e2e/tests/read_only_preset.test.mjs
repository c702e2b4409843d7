// The "read-only" preset: a signed-in user opens a notebook nobody is running; JupyterLab
// says plainly that they may not start a kernel, and shows the notebook read-only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConcord, notebook } from '../lib/concord.mjs';
import { launchBrowser, loginAs, waitForLab, shot } from '../lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startConcord({
    preset: 'read-only',
    users: { reader: { password: 'reader-pass-1' } },
    files: { 'report.ipynb': notebook(['print("report")']) },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a reader is told they may not start a kernel; the notebook is read-only', async () => {
  const { context, page } = await loginAs(browser, server, 'reader', 'reader-pass-1', { next: 'lab/tree/report.ipynb', label: 'read-only-reader' });
  await waitForLab(page);
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor({ timeout: 60_000 });
  await shot(page, 'read-only-reader-02-no-kernel');
  assert.match(await dialog.textContent(), /Error Starting Kernel.*not authorized to write on resource: sessions/s);
  await dialog.locator('button:has-text("Ok")').click();
  await page.waitForSelector('.jp-NotebookPanel :text("notebook is read-only")');
  await page.waitForSelector('.jp-NotebookPanel .jp-Cell:has-text("print")');
  await context.close();
});
