// Start a real concord (the debug binary) on 127.0.0.1 with its own temporary root, state
// and policy, users created through `concord user add` (password on stdin); stop it and
// remove everything afterwards.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The concord binary: $CONCORD_BIN, else <target dir>/debug/concord. */
export function concordBin() {
  if (process.env.CONCORD_BIN) return process.env.CONCORD_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(repo, 'target');
  return path.join(target, 'debug', 'concord');
}

/** PATH with the project's venv first, so concord finds JupyterLab and ipykernel there. */
function envWithVenv() {
  const venvBin = path.join(repo, '.venv', 'bin');
  return { ...process.env, PATH: `${venvBin}:${process.env.PATH}` };
}

/** A minimal nbformat 4 notebook with the given code cells. */
export function notebook(cells) {
  return JSON.stringify({
    cells: cells.map((source, i) => ({
      cell_type: 'code', execution_count: null, id: `cell-${i}`, metadata: {}, outputs: [], source,
    })),
    metadata: {
      kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' },
      language_info: { name: 'python' },
    },
    nbformat: 4,
    nbformat_minor: 5,
  }, null, 1) + '\n';
}

/**
 * Start concord: named users (`o.users`), or token mode with `o.token`.
 * @param {object} o
 * @param {Record<string,{password:string,groups?:string[]}>} [o.users]
 * @param {string} [o.token] token mode with this token (no users, no policy)
 * @param {string} [o.policy] TOML policy text (else o.preset)
 * @param {string} [o.preset]
 * @param {Record<string,string>} [o.files] root-relative path → content
 */
export async function startConcord(o) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'concord-e2e-'));
  const root = path.join(tmp, 'root');
  const state = path.join(tmp, 'state');
  fs.mkdirSync(root);
  fs.mkdirSync(state, { mode: 0o700 });
  for (const [rel, content] of Object.entries(o.files || {})) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (rel.endsWith('/')) continue;
    fs.writeFileSync(p, content);
  }
  const bin = concordBin();
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build -p concord-server`);
  for (const [name, u] of Object.entries(o.users || {})) {
    const args = ['user', 'add', name, '--state-dir', state];
    if (u.groups?.length) args.push('--groups', u.groups.join(','));
    const r = spawnSync(bin, args, { input: `${u.password}\n`, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`concord user add ${name}: ${r.stdout} ${r.stderr}`);
  }
  const args = ['serve', '--ip', '127.0.0.1', '--port', '0',
    '--auth', o.token ? 'token' : 'users', '--root-dir', root, '--state-dir', state];
  const env = envWithVenv();
  if (o.token) {
    env.CONCORD_TOKEN = o.token;
  } else if (o.policy) {
    const policyPath = path.join(tmp, 'policy.toml');
    fs.writeFileSync(policyPath, o.policy);
    args.push('--policy', policyPath);
  } else {
    args.push('--preset', o.preset || 'owner-only');
  }
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stderr.on('data', (d) => log.push(d.toString()));
  const base = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`concord did not start:\n${out}\n${log.join('')}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d.toString();
      const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) { clearTimeout(timer); resolve(`http://127.0.0.1:${m[1]}/`); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`concord exited (${code}):\n${out}\n${log.join('')}`)); });
  });
  return {
    base, root, state, log,
    file: (rel) => path.join(root, rel),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const done = new Promise((r) => child.once('exit', r));
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await done;
        clearTimeout(t);
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}
