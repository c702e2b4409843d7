"""Concord's benchmark runner: starts concord and jupyter_server on loopback with the same
fixtures, runs each scenario against both, and prints figures and ratios.

Each scenario is a function registered with @scenario; it returns a list of result rows
(name, concord figure, jupyter figure or None, unit, target description). Add scenarios for
new services here (or in a module imported from here)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Another build can be measured with CONCORD_BENCH_BIN (e.g. the commit before a change).
CONCORD = Path(os.environ.get("CONCORD_BENCH_BIN", ROOT / "target" / "release" / "concord"))
LOADGEN = ROOT / "target" / "release" / "concord-loadgen"
PYTHON = ROOT / ".venv" / "bin" / "python"
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, headers=None, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2):
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Server:
    """A server process with a token; stopped on exit."""

    def __init__(self, kind, root, extra=()):
        self.kind = kind
        self.port = free_port()
        self.token = f"bench-{kind}-{self.port}"
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        env = dict(os.environ)
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
        if kind == "concord":
            cmd = [str(CONCORD), "--ip", "127.0.0.1", "--port", str(self.port),
                   "--root-dir", str(root), "--state-dir", self.tmp, "--log-level", "warn",
                   *extra]
            env["CONCORD_TOKEN"] = self.token
        else:
            cmd = [str(PYTHON), "-m", "jupyter_server", "--no-browser",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                   "--ServerApp.port_retries=0", "--ServerApp.allow_root=True",
                   f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={root}", "--log-level=WARN", *extra]
            env["JUPYTER_RUNTIME_DIR"] = self.tmp
            env["JUPYTER_CONFIG_DIR"] = os.path.join(self.tmp, "config")
            env["JUPYTER_NO_CONFIG"] = "1"
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}/"
        self.headers = {"Authorization": f"token {self.token}"}
        wait_http(self.base + "api/status", self.headers)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def rss_kib(self):
        """Resident memory of the server and its children (kernels), in KiB."""
        out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout.split()
        own = subprocess.run(["ps", "-o", "rss=", "-p", str(self.proc.pid)],
                             capture_output=True, text=True).stdout.split()
        return sum(int(x) for x in own), sum(int(x) for x in out)


def load(server, path, concurrency, seconds=4.0, method="GET", body_file=None):
    cmd = [str(LOADGEN), "--url", server.base + path, "--header",
           f"Authorization: token {server.token}", "--concurrency", str(concurrency),
           "--seconds", str(seconds), "--method", method]
    if body_file:
        cmd += ["--body-file", str(body_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@scenario
def authz(ctx):
    """Authorization decision latency: 1,000 users, 50 groups, 200 path rules."""
    out = subprocess.run(["cargo", "bench", "--quiet", "-p", "concord-authz", "--bench",
                          "decisions"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows = []
    targets = {"authz.cached.p99_us": "<= 5 us", "authz.uncached.p99_us": "<= 100 us"}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("authz."):
            try:
                value = float(parts[1])
            except ValueError:
                continue
            unit = "us" if parts[0].endswith("_us") else ("ms" if parts[0].endswith("_ms") else "")
            rows.append((parts[0], value, None, unit, targets.get(parts[0], "")))
    if not rows:
        raise RuntimeError("the authz benchmark printed no figures:\n" + out)
    return rows


@scenario
def status(ctx):
    """Requests/s of an authenticated GET /api/status."""
    rows = []
    for c in (1, 32):
        ours = load(ctx["concord"], "api/status", c)
        theirs = load(ctx["jupyter"], "api/status", c)
        rows.append((f"status.rps.c{c}", ours["rps"], theirs["rps"], "req/s",
                     "higher is better"))
        rows.append((f"status.p99.c{c}", ours["p99_ms"], theirs["p99_ms"], "ms", ""))
    return rows


# Scenarios of the services, each in its own module next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import contents as _contents_bench  # noqa: E402

for _fn in _contents_bench.scenarios(load):
    scenario(_fn)

import kernels as _kernels_bench  # noqa: E402

for _fn in _kernels_bench.scenarios(load):
    scenario(_fn)

import events as _events_bench  # noqa: E402

for _fn in _events_bench.scenarios(load):
    scenario(_fn)


def expand(words):
    """Scenario names; a group word (`kernels`) stands for every `kernels_…` scenario."""
    names = []
    for w in words:
        group = [n for n in SCENARIOS if n.startswith(w + "_")]
        names.extend([w] if w in SCENARIOS or not group else group)
    return names


def main(argv):
    wanted = expand(argv) if argv else list(SCENARIOS)
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    fixtures = Path(tempfile.mkdtemp(prefix="bench-root-"))
    ctx = {"root": fixtures}
    servers = []
    try:
        ctx["concord"] = Server("concord", fixtures)
        servers.append(ctx["concord"])
        ctx["jupyter"] = Server("jupyter", fixtures)
        servers.append(ctx["jupyter"])
        results = []
        for name in wanted:
            print(f"# {name}: {SCENARIOS[name].__doc__.strip()}", flush=True)
            for row in SCENARIOS[name](ctx):
                key, ours, theirs, unit, target = row
                ratio = ""
                if theirs:
                    r = (ours / theirs) if unit in ("req/s", "msg/s", "MB/s") else (theirs / ours if ours else float("inf"))
                    ratio = f"{r:.2f}x"
                theirs_s = f"{theirs:.3f}" if theirs is not None else "-"
                print(f"{key:32} concord {ours:12.3f} {unit:6} jupyter {theirs_s:>12} {ratio:>8}  {target}",
                      flush=True)
                results.append({"metric": key, "concord": ours, "jupyter_server": theirs,
                                "unit": unit, "ratio": ratio, "target": target})
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=1))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(fixtures, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
