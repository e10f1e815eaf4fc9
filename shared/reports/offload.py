"""Charts and exports made in a short-lived helper process, for the bot, handed over as files.

A bot runs for weeks. Rendering a chart in it would keep matplotlib resident (~25 MB, and
its font cache) for the rest of its life, and an export of many calls grows its heap to
the size of the document; CPython rarely gives either back. So the bot runs
`python -m shared.reports.offload`, which opens the database, makes the PNG or the
document with the same functions the CLI uses, writes it into a private temporary file
and exits. The bot never holds the bytes: it sends the file by its path (Pyrogram reads
it in chunks) and deletes it afterwards (`discard`).

The temporary file: a directory of its own made by the bot (mode 0700, `tempfile.mkdtemp`),
and in it the file, created by the helper with mode 0600 (exclusive create, no symlink
followed). The request (database URL included, which may hold a password) goes through
stdin, never the command line, which other users of the machine can read.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from shared.reports.queries import ReportError

TIMEOUT_SECONDS = 120
PREFIX = "tokenpool-report-"


@dataclass(frozen=True)
class MadeFile:
    """A file the helper made: `path` (private, temporary; `discard` it once sent), the name
    to show, and for exports the number of rows and the UTC days covered."""
    path: str
    filename: str
    rows: int = 0
    start: dt.date | None = None
    end: dt.date | None = None


def chart_file(database_url: str, now: dt.datetime, days: int) -> MadeFile:
    """The `.chart` PNG of the last `days` UTC days (see charts.usage_chart), as a file."""
    return _run({"kind": "chart", "database_url": database_url, "now": now.isoformat(), "days": days,
                 "filename": f"tokenpool-usage-{days}d.png"})


def export_file(database_url: str, now: dt.datetime, fmt: str, days: int) -> MadeFile:
    """The `.export` document of the last `days` UTC days (see exports.export_document), as a file."""
    return _run({"kind": "export", "database_url": database_url, "now": now.isoformat(), "days": days,
                 "format": fmt})


def discard(path: str) -> None:
    """Delete a file made here, and its private directory (nothing else: only paths in a
    directory this module made are touched)."""
    directory = os.path.dirname(path)
    if os.path.basename(directory).startswith(PREFIX):
        shutil.rmtree(directory, ignore_errors=True)


def _run(request: dict) -> MadeFile:
    directory = tempfile.mkdtemp(prefix=PREFIX)          # mode 0700, ours alone
    try:
        done = subprocess.run([sys.executable, "-m", "shared.reports.offload"],
                              input=json.dumps({**request, "directory": directory}).encode(),
                              capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"the {request['kind']} helper failed: {lines[-1] if lines else done.returncode}")
        reply = json.loads(done.stdout)
        if "error" in reply:
            raise ReportError(reply["error"])
        path = os.path.join(directory, os.path.basename(reply["filename"]))
        if not os.path.isfile(path):
            raise RuntimeError(f"the {request['kind']} helper left no file")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    start, end = reply.get("start"), reply.get("end")
    return MadeFile(path, reply["filename"], reply.get("rows", 0),
                    dt.date.fromisoformat(start) if start else None, dt.date.fromisoformat(end) if end else None)


def _private_file(directory: str, filename: str):
    """A new file only its owner can read (mode 0600 whatever the umask; never an existing
    file or a symlink)."""
    path = os.path.join(directory, os.path.basename(filename))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _serve(request: dict) -> dict:
    from shared.core.db import connect_database
    db = connect_database(request["database_url"])
    now = dt.datetime.fromisoformat(request["now"])
    try:
        if request["kind"] == "chart":
            from shared.reports.charts import usage_chart
            png = usage_chart(now, request["days"])
            with _private_file(request["directory"], request["filename"]) as out:
                out.write(png)
            return {"filename": request["filename"]}
        from shared.reports.exports import export_document
        document = export_document(now, request["format"], request["days"])
        with _private_file(request["directory"], document.filename) as out:
            out.write(document.data)
        return {"filename": document.filename, "rows": document.rows, "start": document.start.isoformat(),
                "end": document.end.isoformat()}
    except ReportError as exc:
        return {"error": str(exc)}
    finally:
        db.close()


def main() -> int:
    sys.stdout.write(json.dumps(_serve(json.loads(sys.stdin.buffer.read()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
