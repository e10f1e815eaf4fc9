"""The keys as the worker sees them on each tick: read in bulk, re-evaluated only where
something changed.

A key's status can only change when its row changes or when the clock passes its window's
end or its cooldown's end. So each tick reads the rows as plain values (no model objects),
keeps the previous tick's evaluation of every row that is unchanged, and calls the shared
`key_status` only for rows that differ or whose time has come. Where the database exposes
row versions (PostgreSQL), only the versions are read in bulk and only changed rows are
fetched whole. With nothing changed, a tick over 10,000 keys is one SELECT and a
comparison per row.
"""
from __future__ import annotations

import datetime as dt
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass

from shared.core import windows
from shared.core.db import row_version
from shared.core.key_rows import KEY_ROW_FIELDS, KeyRow, key_row
from shared.core.models import ApiKey
from shared.core.prepared import Prepared, Statements
from shared.core.status import ELIGIBLE, Status, key_status, window_usage
from worker.ranking import Candidate

KeyName = namedtuple("KeyName", "label masked invalid_reason")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key, evaluated at `since`; valid until `until` unless its row changes."""
    version: object                     # the row's version (PostgreSQL) or the raw row itself
    raw: tuple
    row: KeyRow
    status: Status
    window_start: dt.datetime           # the current window's start
    left: int
    since: dt.datetime
    until: dt.datetime
    candidate: Candidate | None         # as the ranking policies see it; None when not eligible

    @property
    def stored_status_differs(self) -> bool:
        return self.row.status != self.status.value

    @property
    def reset_due(self) -> bool:
        """The row still carries the counters of a window that has ended."""
        return self.row.window_start is not None and self.row.window_start < self.window_start



@dataclass(frozen=True)
class Refresh:
    changed: list[KeyState]             # re-evaluated this tick (new, changed, or their time came)
    removed: list[int]                  # ids gone from the table
    before: dict[int, KeyState | None]  # the previous evaluation of each changed key


class KeyTable:
    def __init__(self, low_threshold: int):
        self.low_threshold = low_threshold
        self.states: dict[int, KeyState] = {}
        self._checked_at: dt.datetime | None = None     # clock of the last refresh
        self._next_due: dt.datetime | None = None       # earliest `until` of any state (or earlier)
        self._statements = Statements()                 # the reads of every tick, compiled once

    def forget(self) -> None:
        """Drop what we know, so the next refresh re-evaluates every key."""
        self.states, self._checked_at, self._next_due = {}, None, None

    def refresh(self, db, now: dt.datetime) -> Refresh:
        version = row_version(db)
        if version is None:
            fetched = [(raw, raw) for raw in self._select(db, KEY_ROW_FIELDS)]
            present = None
        else:
            present = dict(self._select(db, (ApiKey.id, version)))
            stale = [key_id for key_id, v in present.items()
                     if (s := self.states.get(key_id)) is None or s.version != v]
            fetched = [(raw[:-1], raw[-1]) for raw in self._select_ids(db, KEY_ROW_FIELDS + (version,), stale,
                                                                         len(present))]
        states = self.states
        changed, before = [], {}
        for raw, v in fetched:
            state = states.get(raw[0])
            if state is None or state.version != v:
                before[raw[0]] = state
                state = states[raw[0]] = self._evaluate(raw, v, now)
                changed.append(state)
        if self._checked_at is None or now < self._checked_at or (self._next_due and now >= self._next_due):
            changed += self._evaluate_due(now, before)
        elif changed:
            earliest = min(s.until for s in changed)
            self._next_due = earliest if self._next_due is None else min(self._next_due, earliest)
        self._checked_at = now
        removed = self._drop_missing(present if present is not None else [raw[0] for raw, _ in fetched])
        return Refresh(changed, removed, before)

    def names(self, db, ids: Iterable[int]) -> dict[int, KeyName]:
        """Label, masked form and invalid reason of `ids` (for alert texts)."""
        ids = list(ids)
        return {row[0]: KeyName(*row[1:]) for row in self._select_ids(
            db, (ApiKey.id, ApiKey.label, ApiKey.masked, ApiKey.invalid_reason), ids, len(ids) + 1)}

    def candidates(self) -> list[Candidate]:
        return [s.candidate for s in self.states.values() if s.candidate is not None]

    def in_config(self) -> list[KeyState]:
        return [s for s in self.states.values() if s.row.in_config]

    # --- internals ----------------------------------------------------------------------

    def _evaluate(self, raw: tuple, version, now: dt.datetime) -> KeyState:
        row = key_row(raw)
        status = key_status(row, now, self.low_threshold)
        usage = window_usage(row, now)
        until = usage.window_start + windows.WINDOW
        if row.cooldown_until is not None and now < row.cooldown_until:
            until = min(until, row.cooldown_until)
        candidate = (Candidate(row.id, row.position, usage.left, row.last_used_at)
                     if row.in_config and status in ELIGIBLE else None)
        return KeyState(version=version, raw=raw, row=row, status=status, window_start=usage.window_start,
                        left=usage.left, since=now, until=until, candidate=candidate)

    def _evaluate_due(self, now: dt.datetime, before: dict[int, KeyState | None]) -> list[KeyState]:
        """Re-evaluate every unchanged key whose window or cooldown ended (or the clock went back)."""
        due = []
        for key_id, state in self.states.items():
            if key_id not in before and not (state.since <= now < state.until):
                before[key_id] = state
                due.append(self._evaluate(state.raw, state.version, now))
        for state in due:
            self.states[state.row.id] = state
        self._next_due = min((s.until for s in self.states.values()), default=None)
        return due

    def _drop_missing(self, present) -> list[int]:
        if len(present) >= len(self.states):
            return []
        keep = set(present)
        removed = [key_id for key_id in self.states if key_id not in keep]
        for key_id in removed:
            del self.states[key_id]
        return removed

    def _select(self, db, columns, where=None) -> list[tuple]:
        if where is not None:
            return Prepared(ApiKey.select(*columns).where(where)).raw_rows(db)
        name = tuple(getattr(column, "name", None) or column.sql for column in columns)   # Fields or SQL
        return self._statements.get(db, name, lambda: Prepared(ApiKey.select(*columns))).raw_rows(db)

    def _select_ids(self, db, columns, ids: list[int], total: int) -> list[tuple]:
        if not ids:
            return []
        if len(ids) * 2 > total:                # most rows: one full read beats many lookups
            wanted = set(ids)
            return [row for row in self._select(db, columns) if row[0] in wanted]
        rows = []
        for i in range(0, len(ids), _CHUNK):
            rows += self._select(db, columns, ApiKey.id.in_(ids[i:i + _CHUNK]))
        return rows
