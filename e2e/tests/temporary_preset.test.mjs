// The "temporary" preset: a signed-in user runs code in a kernel of their own and sees the
// output, but saving is refused with a clear message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startConcord, notebook } from '../lib/concord.mjs';
import { launchBrowser, loginAs, waitForLab, waitForKernelIdle, dismissNews, shot, expectSaveRefused } from '../lib/browser.mjs';

const NB = 'lesson.ipynb';
let server;
let browser;

before(async () => {
  server = await startConcord({
    preset: 'temporary',
    users: { guest: { password: 'guest-pass-1' } },
    files: { [NB]: notebook(['print("temporary:", sum(range(10)))']) },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a guest runs code and sees output; saving is refused with a message', async () => {
  const onDisk = fs.readFileSync(server.file(NB), 'utf8');
  const { context, page } = await loginAs(browser, server, 'guest', 'guest-pass-1', { next: `lab/tree/${NB}`, label: 'temporary-guest' });
  await waitForLab(page);
  await waitForKernelIdle(page);
  await dismissNews(page);
  await page.click('.jp-NotebookPanel .jp-Cell .cm-content');
  await page.keyboard.press('Shift+Enter');
  await page.waitForSelector('.jp-OutputArea-output:has-text("temporary: 45")', { timeout: 60_000 });
  await shot(page, 'temporary-guest-02-ran');
  await expectSaveRefused(page, server, NB, 'lesson-copy.ipynb', 'temporary-guest-03');
  const put = await page.evaluate(async (nb) => {
    const xsrf = document.cookie.split('; ').find((c) => c.startsWith('_xsrf=')).slice(6);
    const r = await fetch(`/api/contents/${nb}`, {
      method: 'PUT', headers: { 'X-XSRFToken': xsrf },
      body: JSON.stringify({ type: 'file', format: 'text', content: 'x' }),
    });
    return { status: r.status, body: await r.json() };
  }, NB);
  assert.equal(put.status, 403);
  assert.match(put.body.message, /not authorized to write/);
  assert.equal(fs.readFileSync(server.file(NB), 'utf8'), onDisk);
  await context.close();
});
