// One server, a policy "editor writes /projects/a, viewer reads it, outsider has nothing",
// three people in their own browser contexts, each logging in through the form.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startConcord, notebook } from '../lib/concord.mjs';
import { launchBrowser, loginAs, waitForLab, waitForKernelIdle, dismissNews, shot, eventually, expectSaveRefused } from '../lib/browser.mjs';

const POLICY = `
[roles.browse]
description = "See the top folders"
permissions = ["api:read", "config:read", "contents:read", "kernelspecs:read", "csp:write"]

[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own"]

[roles.shell]
permissions = ["terminals:*:own"]

[roles.viewer]
permissions = ["contents:read"]

[roles.watcher]
description = "See running kernels and notebooks, and watch (not drive) them"
permissions = ["kernels:read:any", "sessions:read:any"]

[[bindings]]
role = "browse"
everyone = true
paths = ["/", "/projects", "/projects/open/**"]

[[bindings]]
role = "browse"
users = ["editor", "viewer"]

[[bindings]]
role = "editor"
users = ["editor"]
paths = ["/projects/a/**"]

[[bindings]]
role = "shell"
users = ["editor"]

[[bindings]]
role = "viewer"
users = ["viewer"]
paths = ["/projects/a/**"]

[[bindings]]
role = "watcher"
users = ["viewer"]
`;

const NB = 'projects/a/analysis.ipynb';
let server;
let browser;
let editor; // the editor's { context, page }, kept open for the viewer's tests

before(async () => {
  server = await startConcord({
    policy: POLICY,
    users: {
      editor: { password: 'editor-pass-1' },
      viewer: { password: 'viewer-pass-1' },
      outsider: { password: 'outsider-pass-1' },
    },
    files: {
      [NB]: notebook(['print("answer:", 6 * 7)']),
      'projects/open/readme.md': '# Open to everyone\n',
    },
  });
  browser = await launchBrowser();
});

after(async () => {
  await editor?.context.close();
  await browser?.close();
  await server?.stop();
});

test('a wrong password gets a clear message on the login page', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 760 } });
  const page = await context.newPage();
  await page.goto(server.base + 'lab');
  await page.fill('#username', 'editor');
  await page.fill('#password', 'not-the-password');
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  const alert = await page.textContent('[role="alert"]');
  assert.match(alert, /Invalid username or password/);
  await shot(page, 'login-failed-phone-width');
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the login page fits a phone-width screen (scrollWidth ${width})`);
  await context.close();
});

test('the editor runs a cell, sees the output and saves it to disk', async () => {
  const before = fs.readFileSync(server.file(NB), 'utf8');
  editor = await loginAs(browser, server, 'editor', 'editor-pass-1', { next: `lab/tree/${NB}` });
  const { page } = editor;
  await waitForLab(page);
  await page.waitForSelector('.jp-NotebookPanel .jp-Cell');
  await waitForKernelIdle(page);
  await dismissNews(page);
  await shot(page, 'editor-02-notebook-open');
  await page.click('.jp-NotebookPanel .jp-Cell .cm-content');
  await page.keyboard.press('Shift+Enter');
  await page.waitForSelector('.jp-OutputArea-output:has-text("answer: 42")', { timeout: 60_000 });
  await shot(page, 'editor-03-output');
  await page.keyboard.press('Control+s');
  const saved = await eventually(() => {
    const now = fs.readFileSync(server.file(NB), 'utf8');
    return now !== before && now.includes('answer: 42') ? now : null;
  }, 'the notebook on disk to hold the output');
  assert.equal(JSON.parse(saved).cells[0].outputs[0].text.join(''), 'answer: 42\n');
  await shot(page, 'editor-04-saved');
});

test('the viewer sees the notebook; running and saving are refused with a message', async () => {
  const onDisk = fs.readFileSync(server.file(NB), 'utf8');
  const { context, page } = await loginAs(browser, server, 'viewer', 'viewer-pass-1', { next: `lab/tree/${NB}` });
  await waitForLab(page);
  await page.waitForSelector('.jp-OutputArea-output:has-text("answer: 42")');
  await waitForKernelIdle(page); // joined the editor's kernel, as a watcher
  await dismissNews(page);
  await shot(page, 'viewer-02-notebook-open');
  // Run: the kernel refuses the viewer's execute_request and says why, in the cell.
  await page.click('.jp-NotebookPanel .jp-Cell .cm-content');
  await page.keyboard.press('Shift+Enter');
  const refusal = page.locator('.jp-OutputArea-output:has-text("PermissionError")');
  await refusal.waitFor({ timeout: 30_000 });
  assert.match(await refusal.textContent(), /may watch this kernel but not run code/);
  // Save: JupyterLab knows the file is not writable for the viewer and says so; "Save As"
  // into the folder is refused by the server, whose reason JupyterLab shows.
  await expectSaveRefused(page, server, NB, 'projects/a/analysis-copy.ipynb', 'viewer-03-save-refused');
  // The server refuses a plain save all the same, with a message naming the permission.
  const put = await page.evaluate(async (nb) => {
    const xsrf = document.cookie.split('; ').find((c) => c.startsWith('_xsrf=')).slice(6);
    const model = await (await fetch(`/api/contents/${nb}`)).json();
    const r = await fetch(`/api/contents/${nb}`, {
      method: 'PUT', headers: { 'X-XSRFToken': xsrf },
      body: JSON.stringify({ type: 'notebook', format: 'json', content: model.content }),
    });
    return { status: r.status, body: await r.json() };
  }, NB);
  assert.equal(put.status, 403);
  assert.match(put.body.message, /not authorized to write/);
  assert.equal(fs.readFileSync(server.file(NB), 'utf8'), onDisk, 'the file on disk is unchanged');
  await context.close();
});

test("the viewer, watching the editor's kernel, sees the editor's new output", async () => {
  const { context, page } = await loginAs(browser, server, 'viewer', 'viewer-pass-1', { next: `lab/tree/${NB}`, label: 'watcher' });
  await waitForLab(page);
  await waitForKernelIdle(page); // the notebook joined the editor's kernel
  await dismissNews(page);
  // JupyterLab's way to watch a kernel: a console on the notebook's kernel that shows all of
  // the kernel's activity, including what other people run.
  await page.click('.jp-NotebookPanel .jp-Cell .jp-InputArea-prompt', { button: 'right' });
  await page.click('.lm-Menu-item:has-text("New Console for Notebook")');
  const console_ = page.locator('.jp-CodeConsole');
  await console_.waitFor({ timeout: 30_000 });
  await page.waitForSelector('.jp-CodeConsole-banner:has-text("Python")', { timeout: 30_000 });
  await page.click('.jp-CodeConsole-content', { button: 'right' });
  await page.click('.lm-Menu-item:has-text("Show All Kernel Activity")');
  await shot(page, 'watcher-02-console-open');
  // The editor runs a new cell.
  const ed = editor.page;
  await ed.click('.jp-NotebookPanel .jp-Cell >> nth=-1 >> .cm-content');
  await ed.keyboard.type('print("live:", 7 * 6)');
  await ed.keyboard.press('Shift+Enter');
  await ed.waitForSelector('.jp-OutputArea-output:has-text("live: 42")');
  // The viewer's console shows the editor's code and its output as they happen.
  const foreign = page.locator('.jp-CodeConsole .jp-CodeCell').filter({ hasText: 'print("live:", 7 * 6)' });
  await foreign.locator('.jp-OutputArea-output:has-text("live: 42")').waitFor({ timeout: 30_000 });
  await shot(page, 'watcher-03-sees-editor-output');
  await context.close();
});

test('the outsider cannot see /projects/a and gets a clear message on a direct URL', async () => {
  const { context, page } = await loginAs(browser, server, 'outsider', 'outsider-pass-1', { next: 'lab/tree/projects' });
  await waitForLab(page);
  await page.waitForSelector('.jp-DirListing-item:has-text("open")');
  await dismissNews(page);
  const names = await page.locator('.jp-DirListing-itemName').allTextContents();
  assert.ok(!names.map((n) => n.trim()).includes('a'), `projects/a is hidden: ${names}`);
  await shot(page, 'outsider-02-file-browser');
  await page.goto(server.base + `lab/tree/${NB}`);
  await waitForLab(page);
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor();
  await shot(page, 'outsider-03-direct-url');
  assert.match(await dialog.textContent(), /Cannot open.*Could not find path: projects\/a\/analysis.ipynb/s);
  await context.close();
});

test('the terminal opens and echoes for a user allowed terminals', async () => {
  const page = await editor.context.newPage();
  await page.goto(server.base + 'lab/workspaces/terminal');
  await waitForLab(page);
  // Screen-reader mode puts the terminal's text in the DOM (the canvas renderer does not).
  await page.evaluate(async () => {
    const xsrf = document.cookie.split('; ').find((c) => c.startsWith('_xsrf=')).slice(6);
    const r = await fetch('/lab/api/settings/@jupyterlab/terminal-extension:plugin', {
      method: 'PUT', headers: { 'X-XSRFToken': xsrf },
      body: JSON.stringify({ raw: '{"screenReaderMode": true}' }),
    });
    if (r.status !== 204) throw new Error(`settings: ${r.status}`);
  });
  await page.reload();
  await waitForLab(page);
  await dismissNews(page);
  await page.click('.jp-LauncherCard:has-text("Terminal")');
  const terminal = page.locator('.jp-Terminal .xterm-screen');
  await terminal.waitFor({ timeout: 30_000 });
  await page.waitForTimeout(1000); // let the shell print its prompt before typing
  await terminal.click();
  await page.keyboard.type('echo "hello-$((6*7))"');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.jp-Terminal .xterm-accessibility-tree:has-text("hello-42")', { timeout: 30_000 });
  await shot(page, 'editor-05-terminal');
  await page.close();
});
