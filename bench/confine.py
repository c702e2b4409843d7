#!/usr/bin/env python3
"""Start-up cost of Landlock confinement for kernels (issue 7).

Starts a concord server twice (``--confine true`` and ``--confine false``) on a random
loopback port with the project's venv on PATH, then times N kernel starts through the REST
API (``POST /api/kernels`` returns once the kernel answered kernel_info), deleting each
kernel after its start. Prints median and p90 of both runs and the difference.

Usage: bench/confine.py [--concord target/debug/concord] [-n 10]
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, token, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", f"token {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        data = r.read()
        return json.loads(data) if data else None


def run(concord, confine, n):
    tmp = tempfile.mkdtemp(prefix="concord-bench-confine-")
    root, state = os.path.join(tmp, "root"), os.path.join(tmp, "state")
    os.makedirs(root)
    port, token = free_port(), "bench-token"
    env = dict(os.environ, PATH=os.path.join(MAIN, ".venv/bin") + ":" + os.environ["PATH"])
    proc = subprocess.Popen(
        [concord, "--ip", "127.0.0.1", "--port", str(port), "--root-dir", root,
         "--state-dir", state, "--token", token, "--confine", "true" if confine else "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(200):
            try:
                status = call("GET", base + "api/concord/status", token)
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            k = call("POST", base + "api/kernels", token, {"name": "python3"})
            times.append(time.perf_counter() - t0)
            call("DELETE", base + f"api/kernels/{k['id']}", token)
        return status.get("confinement"), times
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--concord", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(MAIN, "target")), "debug", "concord"))
    ap.add_argument("-n", type=int, default=10)
    a = ap.parse_args()
    results = {}
    for confine in (False, True):
        status, times = run(a.concord, confine, a.n)
        times.sort()
        results[confine] = times
        print(f"confine={str(confine).lower():5} status={json.dumps(status)}")
        print(f"  kernel start: median {statistics.median(times)*1000:.0f} ms, "
              f"p90 {times[int(0.9*(len(times)-1))]*1000:.0f} ms, min {times[0]*1000:.0f} ms (n={len(times)})")
    d = statistics.median(results[True]) - statistics.median(results[False])
    print(f"confinement cost (median difference): {d*1000:+.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
