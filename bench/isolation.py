#!/usr/bin/env python3
"""What isolation costs: two concord binaries side by side, in one run.

Starts `--before` and `--after` (e.g. a build of an earlier commit and the current one) on
loopback with default flags (kernels confined), the project's venv on PATH, and measures on
both, alternating so that both see the same machine:

- kernel start: `POST /api/kernels` until it returns (concord answers once the kernel replied
  to kernel_info), then `DELETE`; rounds alternate which server goes first;
- execute round trip: `execute_request("pass")` -> reply and idle over the v1 websocket with
  the blocking client of bench/kernels.py, in alternating blocks.

Prints medians and p90 of both and the ratio after/before (> 1 means slower).

Usage: bench/isolation.py --before /path/to/old/concord --after target/release/concord
       [-n 12] [--executes 400]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from kernels import _BlockingClient, _rest  # noqa: E402


class Server:
    """A concord process on a free loopback port, token mode, default flags."""

    kind = "concord"

    def __init__(self, binary, label):
        self.label = label
        self.tmp = tempfile.mkdtemp(prefix=f"concord-bench-isolation-{label}-")
        root, state = os.path.join(self.tmp, "root"), os.path.join(self.tmp, "state")
        os.makedirs(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.token = "bench-token"
        self.base = f"http://127.0.0.1:{port}/"
        self.headers = {"Authorization": f"token {self.token}"}
        env = dict(os.environ, PATH=os.path.join(MAIN, ".venv/bin") + ":" + os.environ["PATH"])
        self.proc = subprocess.Popen(
            [binary, "--ip", "127.0.0.1", "--port", str(port), "--root-dir", root,
             "--state-dir", state, "--token", self.token],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                status = _rest(self, "GET", "api/status")
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{label}: the server did not start")
        try:
            self.status = _rest(self, "GET", "api/concord/status")
        except Exception:
            # Older builds told it in /api/status.
            self.status = status

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_time(server):
    t0 = time.perf_counter()
    kernel = _rest(server, "POST", "api/kernels", {"name": "python3"})
    elapsed = (time.perf_counter() - t0) * 1000
    _rest(server, "DELETE", f"api/kernels/{kernel['id']}")
    return elapsed


def summary(times):
    times = sorted(times)
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("-n", type=int, default=12, help="kernel starts on each server")
    ap.add_argument("--executes", type=int, default=400, help="execute round trips on each")
    ap.add_argument("--blocks", type=int, default=10)
    args = ap.parse_args()
    servers = [Server(args.before, "before"), Server(args.after, "after")]
    try:
        starts = {s.label: [] for s in servers}
        for i in range(args.n):
            for s in servers if i % 2 == 0 else reversed(servers):
                starts[s.label].append(start_time(s))
        clients, execs = {}, {s.label: [] for s in servers}
        for s in servers:
            kernel = _rest(s, "POST", "api/kernels", {"name": "python3"})["id"]
            c = _BlockingClient(s, kernel)
            c.wait_ready()
            for _ in range(20):
                c.execute("pass")
            clients[s.label] = c
        per_block = args.executes // args.blocks
        for b in range(args.blocks):
            for s in servers if b % 2 == 0 else reversed(servers):
                c = clients[s.label]
                for _ in range(per_block):
                    t0 = time.perf_counter()
                    c.execute("pass")
                    execs[s.label].append((time.perf_counter() - t0) * 1000)
        for c in clients.values():
            c.close()
        rows = [("kernel start (POST -> ready), ms", starts), ("execute round trip, ms", execs)]
        for name, data in rows:
            (b50, b90), (a50, a90) = summary(data["before"]), summary(data["after"])
            print(f"{name}: before p50 {b50:.2f} p90 {b90:.2f} | after p50 {a50:.2f} p90 {a90:.2f}"
                  f" | after/before p50 {a50 / b50:.3f}x p90 {a90 / b90:.3f}x")
        print("after's confinement:", servers[1].status.get("confinement"))
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
