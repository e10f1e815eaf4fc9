"""Persisting resets (docs/design.md invariant 2): zero a key's counters once its window has ended.

Correctness never waits for this: everyone computes the current window from the row and the
clock, and stale counters read as zero. Persisting makes the row itself say so, and leaves
a `KeyReset` row per key and window (unique, so no window is reset twice).

The counters are zeroed only while the stored window is older than the new one, in one
conditional UPDATE: a call recorded meanwhile in the new window has already moved the row
on (accounting starts the window itself), and must not be wiped.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from shared.core.db import locking
from shared.core.models import ApiKey, KeyReset

# Every per-window counter of ApiKey; all zero when a window starts.
WINDOW_COUNTERS = (ApiKey.used_today, ApiKey.input_today, ApiKey.cached_today, ApiKey.output_today,
                   ApiKey.calls_today, ApiKey.rate_hits_today, ApiKey.errors_today, ApiKey.cost_today_nanousd,
                   ApiKey.unpriced_today)
_CHUNK = 500


def persist_resets(due: Iterable[tuple[int, dt.datetime]], *, by: str, now: dt.datetime) -> list[int]:
    """Reset each (key id, new window start) whose stored window is older. Call inside a write
    transaction (the leader's fenced one). Returns the ids actually reset."""
    by_window: dict[dt.datetime, list[int]] = defaultdict(list)
    for key_id, start in due:
        by_window[start].append(key_id)
    done: list[int] = []
    for start, ids in sorted(by_window.items()):
        for i in range(0, len(ids), _CHUNK):
            done += _reset_window(ids[i:i + _CHUNK], start, by, now)
    return done


def _reset_window(ids: list[int], start: dt.datetime, by: str, now: dt.datetime) -> list[int]:
    stale = ApiKey.id.in_(ids) & (ApiKey.window_start < start)
    # Lock the rows first (where the backend has row locks), so the ids we log are exactly
    # the rows the UPDATE zeroes.
    stale_ids = [key_id for (key_id,) in locking(ApiKey.select(ApiKey.id).where(stale)).tuples()]
    if not stale_ids:
        return []
    zeroed = {counter: 0 for counter in WINDOW_COUNTERS}
    (ApiKey.update({**zeroed, ApiKey.window_start: start})
     .where(ApiKey.id.in_(stale_ids) & (ApiKey.window_start < start)).execute())
    (KeyReset.insert_many([(key_id, start, now, by[:128]) for key_id in stale_ids],
                          fields=[KeyReset.key, KeyReset.window_start, KeyReset.reset_at, KeyReset.reset_by])
     .on_conflict_ignore().execute())
    return stale_ids
