"""A minimal kernel (pyzmq and jupyter_client's Session) for the test of a channel that ends
while its kernel lives on: it binds the five sockets of its connection file, answers
kernel_info and shutdown requests and heartbeats, and, the first time it runs (no MARKER
file yet), closes its iopub socket half a second after its first kernel_info reply, then
goes on running without it.

    python channel_closing_kernel.py CONNECTION_FILE MARKER"""

import json
import os
import sys
import time

import zmq
from jupyter_client.session import Session

info = json.load(open(sys.argv[1]))
marker = sys.argv[2]
session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
ctx = zmq.Context()


def bind(kind, port):
    sock = ctx.socket(kind)
    sep = "-" if info["transport"] == "ipc" else ":"
    sock.bind(f"{info['transport']}://{info['ip']}{sep}{info[port]}")
    return sock


shell, control, stdin = (bind(zmq.ROUTER, p) for p in ("shell_port", "control_port", "stdin_port"))
iopub = bind(zmq.XPUB, "iopub_port")
hb = bind(zmq.ROUTER, "hb_port")
poller = zmq.Poller()
for sock in (shell, control, iopub, hb):
    poller.register(sock, zmq.POLLIN)
close_iopub_at = None
first_run = not os.path.exists(marker)

while True:
    events = dict(poller.poll(50))
    if iopub in events:
        iopub.recv()  # a subscription
    if hb in events:
        hb.send_multipart(hb.recv_multipart())
    for sock in (shell, control):
        if sock not in events:
            continue
        idents, frames = session.feed_identities(sock.recv_multipart())
        request = session.deserialize(frames)
        kind = request["header"]["msg_type"]
        if kind == "kernel_info_request":
            if iopub is not None:
                session.send(iopub, "status", {"execution_state": "busy"}, parent=request)
            session.send(sock, "kernel_info_reply",
                         {"status": "ok", "protocol_version": "5.3", "implementation": "test",
                          "implementation_version": "1", "banner": "",
                          "language_info": {"name": "test"}},
                         parent=request, ident=idents)
            if iopub is not None:
                session.send(iopub, "status", {"execution_state": "idle"}, parent=request)
            if first_run and close_iopub_at is None:
                close_iopub_at = time.monotonic() + 0.5
        elif kind == "shutdown_request":
            session.send(sock, "shutdown_reply", {"status": "ok", "restart": False},
                         parent=request, ident=idents)
            sys.exit(0)
    if close_iopub_at is not None and iopub is not None and time.monotonic() > close_iopub_at:
        open(marker, "w").close()
        poller.unregister(iopub)
        iopub.close(linger=0)
        iopub = None
