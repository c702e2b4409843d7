"""Contents benchmarks (issue 3), registered into bench/run.py.

Targets: listing a 1,000-file directory >= 10x jupyter_server's req/s at 1 and 32 clients;
GET and PUT of a 5 MB notebook >= 3x faster; a 10,000-entry listing <= 20 ms (concord,
every entry filtered through the policy)."""

import json
import tempfile
from pathlib import Path


def _fixtures(root: Path):
    listing = root / "bench_list_1k"
    if not listing.exists():
        listing.mkdir()
        for i in range(1000):
            (listing / f"file{i:04}.txt").write_text("x" * 100)
    big = root / "bench_list_10k"
    if not big.exists():
        big.mkdir()
        for i in range(10000):
            (big / f"f{i:05}.txt").write_text("")
    nb_path = root / "bench_5mb.ipynb"
    if not nb_path.exists():
        cells = []
        line = "x = 1  # " + "padding " * 10 + "\n"
        i = 0
        while sum(len(c["source"]) for c in cells) < 5 * 1024 * 1024:
            cells.append({"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": 1,
                          "source": line * 50,
                          "outputs": [{"output_type": "stream", "name": "stdout", "text": "ok\n"}]})
            i += 1
        nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        nb_path.write_text(json.dumps(nb))
    return nb_path


def scenarios(load):
    """The scenario functions; `load(server, path, concurrency, ...)` comes from run.py."""

    def contents_listing(ctx):
        """Requests/s of GET /api/contents/<dir of 1,000 files>?content=1."""
        _fixtures(ctx["root"])
        rows = []
        for c in (1, 32):
            ours = load(ctx["concord"], "api/contents/bench_list_1k?content=1", c)
            # jupyter_server answers one listing at a time (~0.2 s each): 32 queued requests
            # take longer than the default window, which would then count none.
            theirs = load(ctx["jupyter"], "api/contents/bench_list_1k?content=1", c,
                          seconds=4.0 if c == 1 else 15.0)
            rows.append((f"contents.list1k.rps.c{c}", ours["rps"], theirs["rps"], "req/s",
                         ">= 10x jupyter_server"))
        ours = load(ctx["concord"], "api/contents/bench_list_10k?content=1", 1)
        rows.append(("contents.list10k.p50", ours["p50_ms"], None, "ms", "<= 20 ms"))
        return rows

    def contents_notebook(ctx):
        """GET and PUT of a 5 MB notebook (one client)."""
        _fixtures(ctx["root"])
        rows = []
        ours = load(ctx["concord"], "api/contents/bench_5mb.ipynb", 1, seconds=6.0)
        theirs = load(ctx["jupyter"], "api/contents/bench_5mb.ipynb", 1, seconds=6.0)
        rows.append(("contents.nb5mb.get.p50", ours["p50_ms"], theirs["p50_ms"], "ms", ">= 3x faster"))
        nb = json.loads((ctx["root"] / "bench_5mb.ipynb").read_text())
        body = Path(tempfile.mkdtemp()) / "put.json"
        body.write_text(json.dumps({"type": "notebook", "format": "json", "content": nb}))
        ours = load(ctx["concord"], "api/contents/bench_put_c.ipynb", 1, seconds=6.0,
                    method="PUT", body_file=body)
        theirs = load(ctx["jupyter"], "api/contents/bench_put_j.ipynb", 1, seconds=6.0,
                      method="PUT", body_file=body)
        rows.append(("contents.nb5mb.put.p50", ours["p50_ms"], theirs["p50_ms"], "ms", ">= 3x faster"))
        return rows

    return [contents_listing, contents_notebook]
