"""Events benchmarks, registered into bench/run.py.

Saves per second (PUT of a small file, 8 clients) with nobody subscribed to
/api/events/subscribe and with 32 subscribers reading it, on both servers; each save is two
events (`get`, `save`) and every subscriber must receive all of them.

Besides the rates (which on a small machine also measure the Python subscribers competing
for the CPU), the server's own CPU time per save (utime + stime of its process, from /proc)
says what the fan-out costs the server.

Targets: with 32 subscribers concord stays above jupyter_server's rate and loses no event;
its CPU time per save with 32 subscribers is below jupyter_server's without any.

Subscribers are tornado websocket clients (in the venv) on their own thread."""

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

N_SUBSCRIBERS = 32
CLIENTS = 8


def _cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured_load(load, server, path, body):
    """A PUT load, with the server's CPU milliseconds per request."""
    before = _cpu_seconds(server.proc.pid)
    out = load(server, path, CLIENTS, method="PUT", body_file=body)
    cpu = _cpu_seconds(server.proc.pid) - before
    out["cpu_ms"] = 1000.0 * cpu / max(out["requests"], 1)
    return out


class _Subscribers:
    """`n` subscribers on a background event loop, each counting the frames it receives."""

    def __init__(self, server, n):
        self.counts = [0] * n
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sockets = asyncio.run_coroutine_threadsafe(self._connect(server, n),
                                                        self.loop).result(60)
        for i, ws in enumerate(self.sockets):
            asyncio.run_coroutine_threadsafe(self._read(i, ws), self.loop)

    async def _connect(self, server, n):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect
        url = server.base.replace("http://", "ws://") + "api/events/subscribe"
        return [await websocket_connect(HTTPRequest(url, headers=dict(server.headers)))
                for _ in range(n)]

    async def _read(self, i, ws):
        while await ws.read_message() is not None:
            self.counts[i] += 1

    def wait_for(self, expected, timeout=60.0):
        """Wait until every subscriber has `expected` frames (or the timeout); the fraction
        of the expected frames the worst subscriber got."""
        deadline = time.time() + timeout
        while time.time() < deadline and min(self.counts) < expected:
            time.sleep(0.05)
        return min(self.counts) / expected if expected else 1.0

    def close(self):
        for ws in self.sockets:
            self.loop.call_soon_threadsafe(ws.close)
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def scenarios(load):
    """The scenario functions; `load(server, path, concurrency, ...)` comes from run.py."""

    def events(ctx):
        """Saves/s with 0 and 32 event subscribers; events delivered to every subscriber."""
        body = Path(tempfile.mkdtemp()) / "save.json"
        body.write_text(json.dumps({"type": "file", "format": "text", "content": "x" * 100}))
        figures = {}
        for kind in ("concord", "jupyter"):
            server = ctx[kind]
            path = f"api/contents/bench_events_{kind}.txt"
            alone = _measured_load(load, server, path, body)
            subs = _Subscribers(server, N_SUBSCRIBERS)
            try:
                time.sleep(0.5)
                busy = _measured_load(load, server, path, body)
                delivered = subs.wait_for(2 * busy["requests"])
            finally:
                subs.close()
            figures[kind] = (alone, busy, delivered)
        (c0, c32, cd), (j0, j32, jd) = figures["concord"], figures["jupyter"]
        n = N_SUBSCRIBERS
        return [
            ("events.save.rps.sub0", c0["rps"], j0["rps"], "req/s", "higher is better"),
            (f"events.save.rps.sub{n}", c32["rps"], j32["rps"], "req/s", "above jupyter_server"),
            ("events.save.cpu.sub0", c0["cpu_ms"], j0["cpu_ms"], "ms", "server CPU per save"),
            (f"events.save.cpu.sub{n}", c32["cpu_ms"], j32["cpu_ms"], "ms",
             f"below jupyter_server's at sub0 ({j0['cpu_ms']:.3f} ms)"),
            # Saves still in flight when the load stops add a few events: >= 1.0 is no loss.
            (f"events.delivered.sub{N_SUBSCRIBERS}", cd, jd, "", ">= 1.0: no event lost"),
        ]

    return [events]
