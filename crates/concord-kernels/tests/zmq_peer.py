"""A libzmq peer (pyzmq from the project's venv) for tests/zmtp_libzmq.rs: binds one socket,
prints the endpoint it bound, then behaves as `mode` says until stdin closes.

    python zmq_peer.py MODE ENDPOINT

- router-echo: a ROUTER that sends every message back to its sender, and answers a message
  `whoami` with the sender's routing identity.
- pub: an XPUB that waits for a subscription, then publishes COUNT messages of `n` and a
  final `done` (COUNT from the environment, default 1000), plus one 2 MiB message first.
- rep-echo: a REP that answers each request with its own content.
- push: a PUSH socket (which a DEALER or SUB may not talk to).

HEARTBEAT_MS in the environment turns on ZMTP heartbeats (PING every HEARTBEAT_MS, the
connection dropped when nothing comes back within 3 times that); DELAY_S makes `pub` wait
that long after the subscription before publishing."""

import os
import sys
import threading
import time

import zmq


def main():
    mode, endpoint = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    kind = {"router-echo": zmq.ROUTER, "pub": zmq.XPUB, "rep-echo": zmq.REP,
            "push": zmq.PUSH}[mode]
    sock = ctx.socket(kind)
    sock.linger = 0
    if os.environ.get("HEARTBEAT_MS"):
        sock.heartbeat_ivl = int(os.environ["HEARTBEAT_MS"])
        sock.heartbeat_timeout = 3 * int(os.environ["HEARTBEAT_MS"])
    if kind == zmq.XPUB:
        sock.sndhwm = 0  # never drop: the test counts every message
    if endpoint.endswith(":0"):
        port = sock.bind_to_random_port(endpoint.rsplit(":", 1)[0])
        endpoint = endpoint.rsplit(":", 1)[0] + f":{port}"
    else:
        sock.bind(endpoint)
    print(endpoint, flush=True)
    # The test closes stdin to stop us.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    if mode == "router-echo":
        while True:
            frames = sock.recv_multipart()
            if frames[1:] == [b"whoami"]:
                sock.send_multipart([frames[0], frames[0]])
            else:
                sock.send_multipart(frames)
    elif mode == "pub":
        count = int(os.environ.get("COUNT", "1000"))
        event = sock.recv()
        assert event[:1] == b"\x01", event
        time.sleep(float(os.environ.get("DELAY_S", "0")))
        sock.send_multipart([b"big", b"x" * (2 << 20)])
        for i in range(count):
            sock.send_multipart([b"topic", str(i).encode()])
        sock.send_multipart([b"topic", b"done"])
    elif mode == "rep-echo":
        while True:
            sock.send_multipart(sock.recv_multipart())
    threading.Event().wait()


main()
