"""The reference side of the conversion tests: jupyter_ydoc 4 + pycrdt.

Reads a JSON request on stdin: {"kind": "notebook"|"text"|"blob", "content": ...,
"rust_update": hex}. Answers on stdout with the typed dump of the document jupyter_ydoc
builds from the content, the typed dump of the document Rust built, what jupyter_ydoc's
get() makes of each, and jupyter_ydoc's own update (hex) for the reverse direction.
"""
import json
import sys
import warnings

from pycrdt import Array, Doc, Map, Text
from jupyter_ydoc import YBlob, YNotebook, YUnicode

CLASSES = {"notebook": YNotebook, "text": YUnicode, "blob": YBlob}
ROOTS = {
    "notebook": {"state": Map, "meta": Map, "cells": Array},
    "text": {"state": Map, "source": Text},
    "blob": {"state": Map, "source": Map},
}


def plain(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return {"$num": type(v).__name__, "v": v}
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": v.hex()}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [plain(x) for x in v]
    raise TypeError(type(v))


def typed(v):
    if isinstance(v, Text):
        return ["Text", str(v)]
    if isinstance(v, Array):
        return ["Array", [typed(x) for x in v]]
    if isinstance(v, Map):
        return ["Map", {k: typed(v[k]) for k in sorted(v.keys())}]
    return ["Any", plain(v)]


def dump(doc, kind):
    return {name: typed(doc.get(name, type=t)) for name, t in ROOTS[kind].items()}


def to_json(value):
    return {"$bytes": value.hex()} if isinstance(value, (bytes, bytearray)) else value


def main():
    request = json.load(sys.stdin)
    kind = request["kind"]
    content = request["content"]
    if kind == "blob":
        content = bytes.fromhex(content)
    cls = CLASSES[kind]

    # As jupyter-server-ydoc loads a file: a source document written once, then applied.
    source = Doc(client_id=0)
    cls(source).set(content)
    python_doc = Doc()
    python_doc.apply_update(source.get_update())

    rust_doc = Doc()
    rust_doc.apply_update(bytes.fromhex(request["rust_update"]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = {
            "python_typed": dump(python_doc, kind),
            "rust_typed": dump(rust_doc, kind),
            "python_get": to_json(cls(python_doc).get()),
            "rust_get_by_python": to_json(cls(rust_doc).get()),
            "python_update": source.get_update().hex(),
        }
    json.dump(answer, sys.stdout)


main()
