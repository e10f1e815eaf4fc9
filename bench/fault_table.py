"""The fault-by-fault table: served, booked, lost, doubled, from the fault tests' own output.

Each fault test prints one line `[fault] served N, booked N, … lost N, doubled N …` from the
figures it asserted on; this runs those tests and gathers the lines into a Markdown table.

Run:  .venv/bin/python bench/fault_table.py        (needs $TOKENPOOL_TEST_PG_URL and root, as
the tests do: a small tmpfs is mounted for the full-disk faults)
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_TESTS = [
    "tests/reliability/test_journal.py",
    "tests/reliability/test_frozen_leader.py",
    "tests/reliability/test_kill_bot.py",
    "tests/reliability/test_deleted_database.py",
    "tests/reliability/test_booking_pause.py",
]
LINE = re.compile(r"^\[(?P<fault>[^\]]+)\] served (?P<served>\d+), booked (?P<booked>\d+)"
                  r".*?lost (?P<lost>\d+), doubled (?P<doubled>\d+)(?P<note>.*)$")


def rows(output: str) -> list[dict[str, str]]:
    """The figures lines of a pytest run (`-s`), in the order printed."""
    return [m.groupdict() for m in map(LINE.match, output.splitlines()) if m]


def table(found: list[dict[str, str]]) -> str:
    lines = ["| fault | served | booked | lost | doubled |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['fault']} | {r['served']} | {r['booked']} | {r['lost']} | {r['doubled']} |" for r in found]
    return "\n".join(lines)


def main() -> int:
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", *FAULT_TESTS],
                         cwd=ROOT, capture_output=True, text=True)
    found = rows(run.stdout)
    print(table(found))
    summary = [line for line in run.stdout.splitlines() if " passed" in line or " failed" in line]
    print("\n" + (summary[-1] if summary else "pytest printed no summary"), file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
