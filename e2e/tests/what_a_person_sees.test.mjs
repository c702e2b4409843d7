// What a person sees around the notebooks: a user who may not shut the server down still
// has File → Log Out (and no Shut Down), and a page that is not there is an HTML page, not
// JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConcord } from '../lib/concord.mjs';
import { launchBrowser, loginAs, waitForLab, dismissNews, shot } from '../lib/browser.mjs';

const POLICY = `
[roles.member]
permissions = ["api:read", "config:read", "contents:read", "kernelspecs:read", "csp:write"]

[[bindings]]
role = "member"
users = ["member", "outsider"]
`;

let server;
let browser;

before(async () => {
  server = await startConcord({
    policy: POLICY,
    users: {
      member: { password: 'member-pass-1' },
      outsider: { password: 'outsider-pass-1' },
    },
    files: { 'readme.txt': 'hello\n' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a user who may not shut the server down logs out from the File menu', async () => {
  const { context, page } = await loginAs(browser, server, 'member', 'member-pass-1', { label: 'logout-member' });
  await waitForLab(page);
  await dismissNews(page);
  await page.click('.lm-MenuBar-itemLabel:text-is("File")');
  const menu = page.locator('.lm-Menu').first();
  await menu.locator('.lm-Menu-itemLabel:text-is("Log Out")').waitFor();
  await shot(page, 'logout-member-02-file-menu');
  assert.equal(await menu.locator('.lm-Menu-itemLabel:text-is("Shut Down")').count(), 0);
  await Promise.all([
    page.waitForURL(/\/logout/),
    menu.locator('.lm-Menu-itemLabel:text-is("Log Out")').click(),
  ]);
  await shot(page, 'logout-member-03-logged-out');
  // Logged out: the lab asks for a login again.
  await page.goto(server.base + 'lab');
  await page.waitForSelector('form input[name="password"]');
  await context.close();
});

test('a page that is not there is an HTML page', async () => {
  const { context, page } = await loginAs(browser, server, 'outsider', 'outsider-pass-1', { label: 'not-found-outsider' });
  // Notebook 7's URL, not served: a page saying so, with a way back.
  const tree = await page.goto(server.base + 'tree');
  assert.equal(tree.status(), 404);
  await page.waitForSelector('h1:text("404 : Not Found")');
  await page.waitForSelector('a:text("Back to JupyterLab")');
  await shot(page, 'not-found-outsider-02-page');
  const response = await page.goto(server.base + 'files/no-such-file.txt');
  assert.equal(response.status(), 404);
  assert.match(response.headers()['content-type'], /^text\/html/);
  assert.match(await page.textContent('main'), /file or directory '\/no-such-file\.txt' does not exist/);
  await context.close();
});
