// File → Save and Export Notebook As: the menu lists nbconvert's formats, and HTML and
// Executable Script download the right files for a user who may read the notebook; a user
// who may not read it is refused and gets nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startConcord, notebook } from '../lib/concord.mjs';
import { launchBrowser, loginAs, waitForLab, dismissNews, shot, eventually } from '../lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startConcord({
    preset: 'owner-only',
    users: {
      alice: { password: 'alice-pass-1', groups: ['admin'] },
      outsider: { password: 'outsider-pass-1' },
    },
    files: { 'report.ipynb': notebook(['print("exported report")']) },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Every download of the context, the export tabs JupyterLab opens included. */
function collectDownloads(context, page) {
  const downloads = [];
  const watch = (p) => p.on('download', (d) => downloads.push(d));
  watch(page);
  context.on('page', watch);
  return downloads;
}

async function exportAs(page, label) {
  await page.click('.lm-MenuBar-itemLabel:text-is("File")');
  await page.click('.lm-Menu-item:has-text("Save and Export Notebook As")');
  const item = page.locator(`.lm-Menu-itemLabel:text-is("${label}")`);
  await item.waitFor();
  await item.click();
}

test('an allowed user downloads HTML and Python exports from the menu', async () => {
  const { context, page } = await loginAs(browser, server, 'alice', 'alice-pass-1', { next: 'lab/tree/report.ipynb', label: 'export-alice' });
  await waitForLab(page);
  await dismissNews(page);
  await page.waitForSelector('.jp-NotebookPanel .jp-Cell:has-text("exported report")', { timeout: 60_000 });
  const downloads = collectDownloads(context, page);

  // The submenu lists the installed nbconvert's formats.
  const formats = await page.evaluate(async () => (await fetch('/api/nbconvert')).status);
  assert.equal(formats, 200);
  await page.click('.lm-MenuBar-itemLabel:text-is("File")');
  await page.click('.lm-Menu-item:has-text("Save and Export Notebook As")');
  await shot(page, 'export-alice-02-menu');
  await page.locator('.lm-Menu-itemLabel:text-is("HTML")').waitFor();
  const labels = await page.locator('.lm-Menu .lm-Menu-itemLabel').allTextContents();
  for (const expected of ['HTML', 'Executable Script', 'Markdown', 'LaTeX']) {
    assert.ok(labels.includes(expected), `${expected} in ${labels}`);
  }
  await shot(page, 'export-alice-03-formats');
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');

  await exportAs(page, 'HTML');
  // JupyterLab asks whether to sanitize the HTML (`?sanitize_html=true`).
  const dialog = page.locator('.jp-Dialog:has-text("Export as HTML")');
  await dialog.waitFor();
  await shot(page, 'export-alice-04-html-dialog');
  await dialog.locator('button:has-text("Ok")').click();
  await eventually(() => downloads.length === 1, 'the HTML download');
  const html = downloads[0];
  assert.equal(html.suggestedFilename(), 'report.html');
  const htmlText = fs.readFileSync(await html.path(), 'utf8');
  assert.match(htmlText, /<title>report<\/title>/);
  assert.match(htmlText, /exported report/);

  await exportAs(page, 'Executable Script');
  await eventually(() => downloads.length === 2, 'the script download');
  const script = downloads[1];
  assert.equal(script.suggestedFilename(), 'report.py');
  assert.match(fs.readFileSync(await script.path(), 'utf8'), /print\("exported report"\)/);
  await context.close();
});

test('a user who may not read the notebook is refused and downloads nothing', async () => {
  const { context, page } = await loginAs(browser, server, 'outsider', 'outsider-pass-1', { label: 'export-outsider' });
  const downloads = collectDownloads(context, page);
  const response = await page.goto(`${server.base}nbconvert/html/report.ipynb?download=true`);
  assert.equal(response.status(), 404);
  assert.match(await response.text(), /No such file or directory|does not exist/);
  await shot(page, 'export-outsider-02-refused');
  assert.equal(downloads.length, 0);
  await context.close();
});
