# Concord's nbconvert driver, run as `python -c <this> formats|convert`. The request (JSON)
# comes on stdin; the answer goes to stdout as one JSON header line, followed for a
# conversion by the output's bytes (the header says how many). Anything nbconvert prints is
# sent to stderr so it cannot corrupt the answer.
import io
import json
import os
import sys

out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr


def answer(header, body=b""):
    out.write(json.dumps(header).encode("utf-8") + b"\n")
    out.write(body)
    out.flush()
    sys.exit(0)


def fail(kind, message):
    answer({"ok": False, "kind": kind, "message": message})


try:
    from nbconvert.exporters import base
except ImportError as e:
    fail("unavailable", "Could not import nbconvert: %s" % e)
except MemoryError:
    fail("memory", "nbconvert ran out of memory")
except Exception as e:
    # Under an address-space limit, C code that fails to allocate often raises this way.
    fail("start_failed", "nbconvert could not start: %s" % e)


def formats():
    res = {}
    for name in base.get_export_names():
        try:
            exporter = base.get_exporter(name)
        except ValueError:
            continue
        res[name] = {"output_mimetype": exporter.output_mimetype}
    answer({"ok": True, "formats": res})


def convert(request, notebook):
    import nbformat

    name = request["format"]
    try:
        # A dotted name would be imported as a module path: only exporters' names.
        if not name.isidentifier():
            raise NameError(name)
        exporter_class = base.get_exporter(name)
    except (NameError, KeyError, ValueError):
        fail("unknown_format", "No exporter for format: %s" % name)
    try:
        exporter = exporter_class()
    except Exception as e:
        fail("failed", "Could not construct Exporter: %s" % e)
    if request.get("sanitize_html") is not None and hasattr(exporter, "sanitize_html"):
        exporter.sanitize_html = bool(request["sanitize_html"])
    try:
        nb = nbformat.reads(notebook, as_version=4)
    except Exception as e:
        fail("bad_notebook", "not a notebook: %s" % e)
    metadata = {"name": request["name"]}
    if request.get("modified_date"):
        metadata["modified_date"] = request["modified_date"]
    if request.get("path"):
        metadata["path"] = request["path"]
    try:
        output, resources = exporter.from_notebook_node(nb, resources={"metadata": metadata})
    except MemoryError:
        fail("memory", "nbconvert ran out of memory")
    except Exception as e:
        fail("failed", "nbconvert failed: %s" % e)
    if isinstance(output, str):
        output = output.encode("utf-8")
    extension = resources.get("output_extension") or ""
    files = resources.get("outputs") or {}
    limit = request["output_limit"]
    size = len(output) + sum(len(data) for data in files.values())
    if size > limit:
        fail("too_large", "the export is %d bytes, above the limit of %d" % (size, limit))
    zipped = bool(files)
    if zipped:
        # Output and resource files together, as jupyter_server's respond_zip makes them.
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_DEFLATED) as zipf:
            zipf.writestr(request["name"] + extension, output)
            for filename, data in files.items():
                zipf.writestr(os.path.basename(filename), data)
        output = buffer.getvalue()
    answer(
        {
            "ok": True,
            "mimetype": exporter.output_mimetype or None,
            "output_extension": extension,
            "zipped": zipped,
            "length": len(output),
        },
        output,
    )


def main():
    if sys.argv[1:] == ["formats"]:
        formats()
    # The request's JSON on the first line, the notebook's bytes after it.
    request = json.loads(sys.stdin.buffer.readline())
    convert(request, sys.stdin.buffer.read())


main()
