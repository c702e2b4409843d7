"""A real Yjs client of concord's collaboration rooms (pycrdt + jupyter_ydoc), as
JupyterLab's @jupyter/docprovider talks to them: PUT the session, open the room
websocket, sync, send local updates, ask to save.

Run as `collaboration_client.py SCENARIO` with a JSON request on stdin:
{"base": "http://127.0.0.1:PORT/", "tokens": {"alice": "...", ...}, "path": "a.txt", ...}.
Prints one JSON object with what each participant saw; the Rust test asserts on it and on
the file on disk. Every wait is bounded and pumps the socket (no sleeps).
"""
import json
import sys
import time
from urllib.parse import quote

import requests
import websocket
from pycrdt import (
    Doc,
    Text,
    YMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    write_var_uint,
)

TIMEOUT = 20.0


def read_var_uint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def read_var_string(data, pos):
    length, pos = read_var_uint(data, pos)
    return data[pos : pos + length].decode(), pos + length


class Client:
    def __init__(self, base, token, path, fmt="text", kind="file"):
        self.headers = {"Authorization": f"token {token}"}
        r = requests.put(
            f"{base}api/collaboration/session/{quote(path)}",
            json={"format": fmt, "type": kind},
            headers=self.headers,
            timeout=TIMEOUT,
        )
        self.session_status = r.status_code
        self.ws = None
        if r.status_code not in (200, 201):
            return
        model = r.json()
        self.room = f"{fmt}:{kind}:{model['fileId']}"
        url = base.replace("http://", "ws://")
        self.ws = websocket.create_connection(
            f"{url}api/collaboration/room/{self.room}?sessionId={model['sessionId']}",
            header=[f"Authorization: token {token}"],
            timeout=TIMEOUT,
        )
        self.doc = Doc()
        self.source = self.doc.get("source", type=Text)
        self.synced = False
        self.replies = []
        self.closed = None
        self.ws.send_binary(create_sync_message(self.doc))

    def text(self):
        return str(self.source)

    def pump_once(self, timeout):
        self.ws.settimeout(timeout)
        try:
            opcode, frame = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return
        except websocket.WebSocketConnectionClosedException:
            self.closed = self.closed or "closed"
            return
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(frame[:2], "big") if len(frame) >= 2 else None
            self.closed = {"code": code, "reason": frame[2:].decode(errors="replace")}
            return
        if not frame:
            return
        if frame[0] == YMessageType.SYNC:
            if frame[1] == 1:
                self.synced = True
            reply = handle_sync_message(frame[1:], self.doc)
            if reply is not None:
                self.ws.send_binary(reply)
        elif frame[0] == 2:
            text, _ = read_var_string(frame, 1)
            self.replies.append(json.loads(text))

    def wait(self, condition, what):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if self.closed:
                raise AssertionError(f"closed {self.closed} while waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; text {self.text()!r}")
            self.pump_once(min(left, 0.2))

    def wait_synced(self):
        self.wait(lambda: self.synced, "sync step 2")

    def edit(self, change):
        """Make a local change and send it as an update (only local changes are sent)."""
        before = self.doc.get_state()
        change(self.source)
        self.ws.send_binary(create_update_message(self.doc.get_update(before)))

    def save(self, request_id):
        frame = bytes([2]) + write_var_uint(4) + b"save" + write_var_uint(request_id)
        self.ws.send_binary(frame)
        self.wait(
            lambda: any(r.get("responseTo") == request_id for r in self.replies),
            f"the answer to save {request_id}",
        )
        return next(r for r in self.replies if r.get("responseTo") == request_id)

    def close(self):
        if self.ws is not None:
            self.ws.close()


def writers_converge(req):
    alice = Client(req["base"], req["tokens"]["alice"], req["path"])
    bob = Client(req["base"], req["tokens"]["bob"], req["path"])
    for c in (alice, bob):
        c.wait_synced()
        c.wait(lambda c=c: c.text() == req["initial"], "the file's content")
    # Concurrent: each edits before seeing the other's change.
    alice.edit(lambda t: t.insert(0, "alice was here\n"))
    bob.edit(lambda t: t.insert(len(t), "bob too\n"))
    for c in (alice, bob):
        c.wait(lambda c=c: "alice" in c.text() and "bob" in c.text(), "both edits")
    result = {"alice": alice.text(), "bob": bob.text()}
    alice.close()
    bob.close()
    return result


def viewer_changes_nothing(req):
    alice = Client(req["base"], req["tokens"]["alice"], req["path"])
    carol = Client(req["base"], req["tokens"]["carol"], req["path"])
    for c in (alice, carol):
        c.wait_synced()
        c.wait(lambda c=c: c.text() == req["initial"], "the file's content")
    carol.edit(lambda t: t.insert(0, "FORGED BY CAROL\n"))
    # The save request goes after the update on carol's socket: once it is answered,
    # the server has dealt with the update.
    carol_save = carol.save(7)
    alice.edit(lambda t: t.insert(len(t), "alice's line\n"))
    alice.wait(lambda: "alice's line" in alice.text(), "alice's own edit")
    carol.wait(lambda: "alice's line" in carol.text(), "alice's edit at the viewer")
    alice_save = alice.save(8)
    result = {
        "alice": alice.text(),
        "carol": carol.text(),
        "carol_save": carol_save,
        "alice_save": alice_save,
    }
    alice.close()
    carol.close()
    return result


def rest_save_kept(req):
    alice = Client(req["base"], req["tokens"]["alice"], req["path"])
    alice.wait_synced()
    alice.wait(lambda: alice.text() == req["initial"], "the file's content")
    r = requests.put(
        f"{req['base']}api/contents/{quote(req['path'])}",
        json={"type": "file", "format": "text", "content": req["rest_content"]},
        headers=alice.headers,
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    alice.wait(lambda: alice.text() == req["rest_content"], "the REST save in the room")
    alice.edit(lambda t: t.insert(0, "zero\n"))
    answer = alice.save(1)
    result = {"alice": alice.text(), "save": answer}
    alice.close()
    return result


def refused(req):
    """Statuses a caller gets for the session and for an existing room."""
    owner = Client(req["base"], req["tokens"]["alice"], req["path"])
    owner.wait_synced()
    dave = Client(req["base"], req["tokens"]["dave"], req["path"])
    url = req["base"].replace("http://", "ws://")
    try:
        ws = websocket.create_connection(
            f"{url}api/collaboration/room/{owner.room}",
            header=[f"Authorization: token {req['tokens']['dave']}"],
            timeout=TIMEOUT,
        )
        ws.close()
        room_status = 101
    except websocket.WebSocketBadStatusException as e:
        room_status = e.status_code
    owner.close()
    return {"session": dave.session_status, "room": room_status}


def revoked(req):
    """Carol opens the room; the test rewrites the policy; her socket is closed."""
    carol = Client(req["base"], req["tokens"]["carol"], req["path"])
    carol.wait_synced()
    print(json.dumps({"joined": True}), flush=True)
    sys.stdin.readline()
    carol.wait(lambda: carol.closed is not None, "the close after the policy change")
    return {"closed": carol.closed}


SCENARIOS = {
    "writers_converge": writers_converge,
    "viewer_changes_nothing": viewer_changes_nothing,
    "rest_save_kept": rest_save_kept,
    "refused": refused,
    "revoked": revoked,
}

if __name__ == "__main__":
    request = json.loads(sys.stdin.readline())
    print(json.dumps(SCENARIOS[sys.argv[1]](request)), flush=True)
