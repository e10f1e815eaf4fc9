"""Charts and exports made in a short-lived helper process, for the bot.

A bot runs for weeks. Rendering a chart in it would keep matplotlib resident (~25 MB, and
its font cache) for the rest of its life, and an export of many calls grows its heap to
the size of the document; CPython rarely gives either back. So the bot runs
`python -m shared.reports.offload`, which opens the database, makes the PNG or the
document with the same functions the CLI uses, writes it to stdout and exits.

The request (database URL included, which may hold a password) goes through stdin, never
the command line, which other users of the machine can read.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys

from shared.reports.exports import Document
from shared.reports.queries import ReportError

TIMEOUT_SECONDS = 120


def chart_png(database_url: str, now: dt.datetime, days: int) -> bytes:
    """The `.chart` PNG of the last `days` UTC days (see charts.usage_chart)."""
    reply = _run({"kind": "chart", "database_url": database_url, "now": now.isoformat(), "days": days})
    return base64.b64decode(reply["png"])


def export_document(database_url: str, now: dt.datetime, fmt: str, days: int) -> Document:
    """The `.export` document of the last `days` UTC days (see exports.export_document)."""
    reply = _run({"kind": "export", "database_url": database_url, "now": now.isoformat(), "days": days,
                  "format": fmt})
    return Document(reply["filename"], base64.b64decode(reply["data"]), reply["rows"],
                    dt.date.fromisoformat(reply["start"]), dt.date.fromisoformat(reply["end"]))


def _run(request: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "shared.reports.offload"], input=json.dumps(request).encode(),
                          capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"the {request['kind']} helper failed: {lines[-1] if lines else done.returncode}")
    reply = json.loads(done.stdout)
    if "error" in reply:
        raise ReportError(reply["error"])
    return reply


def _serve(request: dict) -> dict:
    from shared.core.db import connect_database
    db = connect_database(request["database_url"])
    now = dt.datetime.fromisoformat(request["now"])
    try:
        if request["kind"] == "chart":
            from shared.reports.charts import usage_chart
            return {"png": base64.b64encode(usage_chart(now, request["days"])).decode()}
        from shared.reports.exports import export_document as make_document
        document = make_document(now, request["format"], request["days"])
        return {"filename": document.filename, "data": base64.b64encode(document.data).decode(),
                "rows": document.rows, "start": document.start.isoformat(), "end": document.end.isoformat()}
    except ReportError as exc:
        return {"error": str(exc)}
    finally:
        db.close()


def main() -> int:
    sys.stdout.write(json.dumps(_serve(json.loads(sys.stdin.buffer.read()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
