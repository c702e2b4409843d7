"""Kernel benchmarks (issue 4), registered into bench/run.py.

In one run, against concord, jupyter_server and a direct ZMQ client, all with the venv's
ipykernel:

- execute `pass` round trip (execute_request -> execute_reply + idle): concord <= 1.1x the
  direct-ZMQ floor and below jupyter_server. Both sides of that ratio use a blocking client
  doing the same work per message, so that the figure measures the path and not the client
  library: over the websocket, websocket-client (jupyter_server's own dependency) with the
  v1 protocol; directly, pyzmq sockets over IPC (the transport concord uses for local
  kernels), signing what it sends as the kernel requires, and parsing header, parent and
  content of what it receives as the websocket client does. The two alternate in blocks.
  For reference, also tornado's asyncio websocket client (as an async front end would), and
  jupyter_client's Session and BlockingKernelClient (which also check signatures and parse
  dates);
- an iopub flood (one message per `print(i, flush=True)`) delivered to 4 websocket clients:
  no loss, messages/s >= jupyter_server's;
- RSS with 20 idle kernels: concord's server process <= 1/5 of jupyter_server's;
- RSS while a cell prints 256 KiB lines without end to one websocket that never reads
  (for `FLOOD_SECONDS`, 60 by default): concord's stays within its budgets (client queue
  and replay: 48 MiB with the defaults) above its idle RSS.

Websocket clients speak v1.kernel.websocket.jupyter.org, as JupyterLab does."""

import asyncio
import hashlib
import hmac
import json
import os
import statistics
import struct
import time
import urllib.request
import uuid

N_EXEC = int(os.environ.get("CONCORD_BENCH_N_EXEC", 300))  # executes measured per target
EXEC_BLOCKS = 10  # concord and the direct-ZMQ floor alternate in this many blocks
N_FLOOD = 10000
N_IDLE_KERNELS = 20
FLOOD_SECONDS = float(os.environ.get("CONCORD_BENCH_FLOOD_SECONDS", 60))
FLOOD_CODE = "s = 'y' * 262144\nwhile True:\n    print(s, flush=True)"
# A side whose RSS passes this is stopped early (the machine is shared).
FLOOD_RSS_GUARD_KIB = 4 << 20
V1 = "v1.kernel.websocket.jupyter.org"


def _rest(server, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.base + path, data=data, method=method,
                                 headers=dict(server.headers))
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def _start_kernel(server):
    return _rest(server, "POST", "api/kernels", {"name": "python3"})["id"]


def _encode_v1(channel, header, content):
    parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
    offsets = [8 * 7, 8 * 7 + len(channel)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return (struct.pack("<Q", len(offsets)) + b"".join(struct.pack("<Q", o) for o in offsets)
            + channel.encode() + b"".join(parts))


def _decode_v1(b):
    n = struct.unpack_from("<Q", b, 0)[0]
    offs = [struct.unpack_from("<Q", b, 8 * (i + 1))[0] for i in range(n)]
    offs.append(len(b))
    part = lambda i: b[offs[i]:offs[i + 1]]  # noqa: E731
    return (part(0).decode(), json.loads(part(1)), json.loads(part(2)), json.loads(part(4)))


def _execute_progress(msg_id, msg, replied, idle):
    """(replied, idle) for the execute `msg_id` once `msg` (channel, header, parent,
    content) has arrived."""
    channel, header, parent, content = msg
    if parent.get("msg_id") == msg_id:
        if channel == "shell" and header["msg_type"] == "execute_reply":
            replied = True
        elif header["msg_type"] == "status" and content["execution_state"] == "idle":
            idle = True
    return replied, idle


class _Client:
    """A v1 kernel websocket client."""

    def __init__(self, ws, session):
        self.ws = ws
        self.session = session

    @classmethod
    async def connect(cls, server, kernel_id):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect
        session = uuid.uuid4().hex
        url = (server.base.replace("http://", "ws://")
               + f"api/kernels/{kernel_id}/channels?session_id={session}")
        ws = await websocket_connect(HTTPRequest(url, headers=dict(server.headers)),
                                     subprotocols=[V1], max_message_size=1 << 30)
        if ws.selected_subprotocol != V1:
            raise RuntimeError(f"{server.kind} did not pick {V1}")
        return cls(ws, session)

    async def send(self, msg_type, content, channel="shell"):
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench",
                  "session": self.session, "date": "2026-01-01T00:00:00Z", "version": "5.3"}
        await self.ws.write_message(_encode_v1(channel, header, content), binary=True)
        return msg_id

    async def recv(self):
        raw = await self.ws.read_message()
        if raw is None:
            raise RuntimeError("websocket closed")
        return _decode_v1(raw)

    async def execute(self, code):
        msg_id = await self.send("execute_request", {"code": code, "silent": False,
                                                     "store_history": False})
        done = (False, False)
        while not all(done):
            done = _execute_progress(msg_id, await self.recv(), *done)

    async def wait_ready(self):
        msg_id = await self.send("kernel_info_request", {})
        while True:
            _, header, parent, _ = await self.recv()
            if parent.get("msg_id") == msg_id and header["msg_type"] == "kernel_info_reply":
                return


class _BlockingClient:
    """A v1 kernel websocket client with blocking reads (websocket-client), the websocket
    counterpart of the floor's blocking pyzmq sockets."""

    def __init__(self, server, kernel_id):
        import socket
        import websocket
        self.session = uuid.uuid4().hex
        url = (server.base.replace("http://", "ws://")
               + f"api/kernels/{kernel_id}/channels?session_id={self.session}")
        self.ws = websocket.create_connection(
            url, subprotocols=[V1], header=[f"{k}: {v}" for k, v in server.headers.items()])
        if self.ws.getsubprotocol() != V1:
            raise RuntimeError(f"{server.kind} did not pick {V1}")
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, msg_type, content, channel="shell"):
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench",
                  "session": self.session, "date": "2026-01-01T00:00:00Z", "version": "5.3"}
        self.ws.send_binary(_encode_v1(channel, header, content))
        return msg_id

    def recv(self):
        return _decode_v1(self.ws.recv())

    def execute(self, code):
        msg_id = self.send("execute_request", {"code": code, "silent": False,
                                               "store_history": False})
        done = (False, False)
        while not all(done):
            done = _execute_progress(msg_id, self.recv(), *done)

    def wait_ready(self):
        msg_id = self.send("kernel_info_request", {})
        while True:
            _, header, parent, _ = self.recv()
            if parent.get("msg_id") == msg_id and header["msg_type"] == "kernel_info_reply":
                return

    def close(self):
        self.ws.close()


def _blocking_execute_times(server, kernel_id, n, between=None, blocks=1):
    """`n` execute round trips with the blocking client, in `blocks` blocks; `between()`
    runs after each block (the floor's turn, so that both see the same machine)."""
    c = _BlockingClient(server, kernel_id)
    try:
        c.wait_ready()
        for _ in range(20):
            c.execute("pass")
        times = []
        for _ in range(blocks):
            for _ in range(n // blocks):
                t0 = time.perf_counter()
                c.execute("pass")
                times.append((time.perf_counter() - t0) * 1000)
            if between:
                between()
        return times
    finally:
        c.close()


async def _ws_execute_times(server, kernel_id, n, between=None, blocks=1):
    """`n` execute round trips over the websocket, in `blocks` blocks; `between()` runs
    after each block (the floor's turn, so that both see the same machine)."""
    c = await _Client.connect(server, kernel_id)
    await c.wait_ready()
    for _ in range(20):
        await c.execute("pass")
    times = []
    for _ in range(blocks):
        for _ in range(n // blocks):
            t0 = time.perf_counter()
            await c.execute("pass")
            times.append((time.perf_counter() - t0) * 1000)
        if between:
            between()
    c.ws.close()
    return times


class _RawZmqFloor:
    """The floor: blocking pyzmq sockets over IPC, the transport concord uses for local
    kernels, on a kernel started by jupyter_client's KernelManager. `times` does per message
    what the blocking websocket client does (sign what it sends, as the kernel requires;
    parse header, parent and content of what it receives); `session_times` uses
    jupyter_client's Session, which also checks signatures and parses dates."""

    def __init__(self):
        import tempfile
        import zmq
        from jupyter_client.manager import KernelManager
        self._dir = tempfile.TemporaryDirectory(prefix="bench-floor-")
        self.km = KernelManager(kernel_name="python3", transport="ipc",
                                connection_file=os.path.join(self._dir.name, "kernel.json"))
        self.km.start_kernel()
        try:
            kc = self.km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            kc.stop_channels()
            self.ctx = zmq.Context()
            self.shell = self.ctx.socket(zmq.DEALER)
            self.shell.connect(self.km._make_url("shell"))
            self.iopub = self.ctx.socket(zmq.SUB)
            self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
            self.iopub.connect(self.km._make_url("iopub"))
            self.session_id = uuid.uuid4().hex
            time.sleep(0.5)  # let the subscription reach the kernel
            self.times(20)
            self.session_times(20)
        except BaseException:
            self.close()
            raise

    def _send(self, msg_type, content):
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench",
                  "session": self.session_id, "date": "2026-01-01T00:00:00Z",
                  "version": "5.3"}
        parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
        mac = hmac.new(self.km.session.key, digestmod=hashlib.sha256)
        for p in parts:
            mac.update(p)
        self.shell.send_multipart([b"<IDS|MSG>", mac.hexdigest().encode(), *parts])
        return msg_id

    @staticmethod
    def _recv(sock):
        frames = sock.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        return json.loads(frames[i + 2]), json.loads(frames[i + 3]), json.loads(frames[i + 5])

    def _one(self):
        msg_id = self._send("execute_request",
                            {"code": "pass", "silent": False, "store_history": False})
        while True:
            _, parent, _ = self._recv(self.shell)
            if parent.get("msg_id") == msg_id:
                break
        while True:
            header, parent, content = self._recv(self.iopub)
            if (parent.get("msg_id") == msg_id and header["msg_type"] == "status"
                    and content["execution_state"] == "idle"):
                break

    def _one_session(self):
        session = self.km.session
        msg = session.send(self.shell, "execute_request",
                           {"code": "pass", "silent": False, "store_history": False})
        msg_id = msg["header"]["msg_id"]
        while True:
            _, reply = session.recv(self.shell, mode=0)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        while True:
            _, m = session.recv(self.iopub, mode=0)
            if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                    and m["content"]["execution_state"] == "idle"):
                break

    @staticmethod
    def _timed(one, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            one()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def times(self, n):
        return self._timed(self._one, n)

    def session_times(self, n):
        return self._timed(self._one_session, n)

    def close(self):
        for sock in ("shell", "iopub"):
            if hasattr(self, sock):
                getattr(self, sock).close(0)
        if hasattr(self, "ctx"):
            self.ctx.term()
        self.km.shutdown_kernel(now=True)
        self._dir.cleanup()


def _zmq_execute_times(n):
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        def one():
            msg_id = kc.execute("pass")
            replied = idle = False
            while not (replied and idle):
                if not replied:
                    r = kc.get_shell_msg(timeout=30)
                    replied = r["parent_header"].get("msg_id") == msg_id
                if not idle:
                    m = kc.get_iopub_msg(timeout=30)
                    idle = (m["parent_header"].get("msg_id") == msg_id
                            and m["msg_type"] == "status"
                            and m["content"]["execution_state"] == "idle")
        for _ in range(20):
            one()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            one()
            times.append((time.perf_counter() - t0) * 1000)
        kc.stop_channels()
        return times
    finally:
        km.shutdown_kernel(now=True)


async def _flood(server, kernel_id, clients, n):
    cs = [await _Client.connect(server, kernel_id) for _ in range(clients)]
    for c in cs:
        await c.wait_ready()
    counts = [0] * clients
    lines = [0] * clients
    done = asyncio.Event()
    code = f"for i in range({n}):\n    print(i, flush=True)"

    async def reader(i, c, target):
        while True:
            channel, header, parent, content = await c.recv()
            if parent.get("msg_id") != target["id"]:
                continue
            if header["msg_type"] == "stream":
                counts[i] += 1
                lines[i] += content["text"].count("\n")
            elif header["msg_type"] == "status" and content["execution_state"] == "idle":
                return

    target = {"id": None}
    t0 = time.perf_counter()
    target["id"] = await cs[0].send("execute_request", {"code": code, "silent": False,
                                                        "store_history": False})
    try:
        await asyncio.wait_for(asyncio.gather(*(reader(i, c, target) for i, c in enumerate(cs))),
                               timeout=120)
        complete = True
    except asyncio.TimeoutError:
        complete = False  # some client never got the final idle
    elapsed = time.perf_counter() - t0
    done.set()
    for c in cs:
        c.ws.close()
    return sum(counts) / elapsed, min(lines) / n, complete


def _stuck_flood_rss(server, kernel_id, seconds):
    """Server RSS (KiB) sampled every 0.5 s while `FLOOD_CODE` runs for `seconds`, sent by
    a websocket client that never reads again: (idle, peak, median of the second half,
    seconds sampled, stopped by the guard)."""
    c = _BlockingClient(server, kernel_id)
    c.wait_ready()
    c.execute("pass")
    time.sleep(1.0)
    idle = server.rss_kib()[0]
    c.send("execute_request", {"code": FLOOD_CODE, "silent": False, "store_history": False})
    samples = []
    guarded = False
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            own = server.rss_kib()[0]
            samples.append(own)
            if own > FLOOD_RSS_GUARD_KIB:
                guarded = True
                break
            time.sleep(0.5)
    finally:
        elapsed = time.perf_counter() - t0
        _rest(server, "POST", f"api/kernels/{kernel_id}/interrupt")
        c.close()
    late = samples[len(samples) // 2:]
    return idle, max(samples), statistics.median(late), elapsed, guarded


def scenarios(load):
    """The scenario functions (`load` from run.py is not needed here)."""

    def kernels_execute(ctx):
        """execute `pass` round trip over the websocket vs a direct ZMQ client."""
        rows = []
        med = {}
        floor_times, session_floor_times = [], []
        floor_kernel = _RawZmqFloor()

        def floor_turn():
            floor_times.extend(floor_kernel.times(N_EXEC // EXEC_BLOCKS))
            session_floor_times.extend(floor_kernel.session_times(N_EXEC // EXEC_BLOCKS))

        def p50_p99(times):
            return statistics.median(times), sorted(times)[int(len(times) * 0.99) - 1]

        try:
            for kind in ("concord", "jupyter"):
                server = ctx[kind]
                kid = _start_kernel(server)
                try:
                    if kind == "concord":
                        # Blocks of concord and of the floor in turn: the kernels' round
                        # trip drifts by 20% over a minute on a shared machine.
                        med[kind] = p50_p99(_blocking_execute_times(
                            server, kid, N_EXEC, blocks=EXEC_BLOCKS, between=floor_turn))
                    else:
                        med[kind] = p50_p99(_blocking_execute_times(server, kid, N_EXEC))
                    med[kind + "_asyncio"] = p50_p99(
                        asyncio.run(_ws_execute_times(server, kid, N_EXEC)))
                finally:
                    _rest(server, "DELETE", f"api/kernels/{kid}")
        finally:
            floor_kernel.close()
        blocking = statistics.median(_zmq_execute_times(N_EXEC))
        floor = statistics.median(floor_times)
        rows.append(("kernels.exec_pass.p50", med["concord"][0], med["jupyter"][0], "ms",
                     "below jupyter_server"))
        rows.append(("kernels.exec_pass.p99", med["concord"][1], med["jupyter"][1], "ms", ""))
        rows.append(("kernels.exec_pass.zmq_floor.p50", floor, None, "ms",
                     "direct ZMQ client (pyzmq, IPC, same work per message, interleaved)"))
        rows.append(("kernels.exec_pass.vs_zmq", med["concord"][0] / floor, None, "x",
                     "<= 1.1x the ZMQ floor"))
        rows.append(("kernels.exec_pass.jupyter_vs_zmq", med["jupyter"][0] / floor, None, "x",
                     "(jupyter_server, for reference)"))
        rows.append(("kernels.exec_pass.asyncio_client.p50", med["concord_asyncio"][0],
                     med["jupyter_asyncio"][0], "ms", "(tornado's asyncio client)"))
        rows.append(("kernels.exec_pass.session_floor.p50",
                     statistics.median(session_floor_times), None, "ms",
                     "(jupyter_client Session: signatures checked, dates parsed)"))
        rows.append(("kernels.exec_pass.blocking_client.p50", blocking, None, "ms",
                     "(jupyter_client BlockingKernelClient)"))
        return rows

    def kernels_iopub_flood(ctx):
        """iopub flood (one message per print) to 4 websocket clients."""
        rows = []
        res = {}
        for kind in ("concord", "jupyter"):
            server = ctx[kind]
            kid = _start_kernel(server)
            try:
                res[kind] = asyncio.run(_flood(server, kid, 4, N_FLOOD))
            finally:
                _rest(server, "DELETE", f"api/kernels/{kid}")
        rows.append(("kernels.flood4.msg_per_s", res["concord"][0], res["jupyter"][0], "msg/s",
                     ">= jupyter_server"))
        rows.append(("kernels.flood4.delivered", res["concord"][1] * 100, res["jupyter"][1] * 100,
                     "%", "100% (worst of 4 clients)"))
        rows.append(("kernels.flood4.all_idle", float(res["concord"][2]),
                     float(res["jupyter"][2]), "bool", "every client sees the final idle"))
        return rows

    def kernels_rss(ctx):
        """RSS with 20 idle kernels (server process alone, and with its kernels)."""
        rows = []
        res = {}
        for kind in ("concord", "jupyter"):
            server = ctx[kind]
            ids = [_start_kernel(server) for _ in range(N_IDLE_KERNELS)]
            try:
                # A websocket to each, as open notebooks have.
                async def attach():
                    cs = [await _Client.connect(server, k) for k in ids]
                    for c in cs:
                        await c.wait_ready()
                    time.sleep(1.0)
                    own, kids = server.rss_kib()
                    for c in cs:
                        c.ws.close()
                    return own, kids
                res[kind] = asyncio.run(attach())
            finally:
                for k in ids:
                    _rest(server, "DELETE", f"api/kernels/{k}")
        mib = lambda k: k / 1024  # noqa: E731
        rows.append(("kernels.rss20.server", mib(res["concord"][0]), mib(res["jupyter"][0]),
                     "MiB", "<= 1/5 of jupyter_server"))
        rows.append(("kernels.rss20.server_ratio", res["concord"][0] / res["jupyter"][0], None,
                     "x", "<= 0.2"))
        rows.append(("kernels.rss20.with_kernels", mib(sum(res["concord"])),
                     mib(sum(res["jupyter"])), "MiB", "(kernels dominate)"))
        return rows

    def kernels_flood_rss(ctx):
        """RSS while a cell prints 256 KiB lines without end to a client that never reads."""
        res = {}
        for kind in ("concord", "jupyter"):
            server = ctx[kind]
            kid = _start_kernel(server)
            try:
                res[kind] = _stuck_flood_rss(server, kid, FLOOD_SECONDS)
            finally:
                _rest(server, "DELETE", f"api/kernels/{kid}")
        mib = lambda k: k / 1024  # noqa: E731
        secs = {k: f"{v[3]:.0f} s{' (stopped at the guard)' if v[4] else ''}"
                for k, v in res.items()}
        rows = [
            ("kernels.flood_stuck.idle", mib(res["concord"][0]), mib(res["jupyter"][0]), "MiB",
             "before the flood"),
            ("kernels.flood_stuck.peak", mib(res["concord"][1]), mib(res["jupyter"][1]), "MiB",
             f"idle + budgets (48 MiB) + what is in flight (sampled {secs['concord']} / "
             f"{secs['jupyter']})"),
            ("kernels.flood_stuck.late_median", mib(res["concord"][2]),
             mib(res["jupyter"][2]), "MiB", "second half of the flood"),
            ("kernels.flood_stuck.growth", mib(res["concord"][1] - res["concord"][0]),
             mib(res["jupyter"][1] - res["jupyter"][0]), "MiB", "peak - idle"),
        ]
        return rows

    return [kernels_execute, kernels_iopub_flood, kernels_rss, kernels_flood_rss]
