"""Which transitions deserve an alert, and their words. Pure, except `write_alerts`.

Each alert carries a dedupe key naming the transition (the key and its window, the ranking
generation, the lease term), so a state seen on many ticks, or by
two workers, is written to the outbox once.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared.core.models import Alert
from shared.core.outbox import enqueue_alert
from shared.core.query_rows import tuple_rows
from shared.core.status import Status
from shared.core.windows import WINDOW, format_duration
from worker.keytable import KeyName, KeyState

_BULK_FROM = 20
_CHUNK = 500


@dataclass(frozen=True)
class AlertSpec:
    kind: str
    dedupe_key: str
    text: str
    key_id: int | None = None


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def key_transitions(state: KeyState, *, rate_limit_hits: int) -> list[str]:
    """The alert kinds one re-evaluated key calls for (its stored status is the old one)."""
    old, new = state.row.status, state.status
    kinds = []
    for status, kind in ((Status.LOW, "key_low"), (Status.EXHAUSTED, "key_exhausted"),
                         (Status.INVALID, "key_invalid")):
        if new is status and old != status.value:
            kinds.append(kind)
    if rate_limit_hits and _window_rate_hits(state) >= rate_limit_hits:
        kinds.append("key_rate_limited")
    return kinds


def key_alert(kind: str, state: KeyState, name: KeyName, now: dt.datetime) -> AlertSpec:
    row = state.row
    who = f"'{name.label}' ({name.masked})"
    window = _stamp(state.window_start)
    resets_in = format_duration(state.window_start + WINDOW - now)
    if kind == "key_low":
        return AlertSpec(kind, f"low:{row.id}:{window}",
                         f"🟡 Key {who} is LOW: {state.left:,} of {row.daily_token_limit:,} tokens left; "
                         f"resets in {resets_in}.", row.id)
    if kind == "key_exhausted":
        return AlertSpec(kind, f"exhausted:{row.id}:{window}",
                         f"🔴 Key {who} is EXHAUSTED and skipped until its window resets in {resets_in}.", row.id)
    if kind == "key_invalid":
        reason = f" ({name.invalid_reason})" if name.invalid_reason else ""
        return AlertSpec(kind, f"invalid:{row.id}:{_stamp(now)}",
                         f"⛔ Key {who} was rejected by the provider{reason} and is skipped. "
                         f"Fix it, then run `tokenpool keys enable {name.label}`.", row.id)
    if kind == "key_rate_limited":
        return AlertSpec(kind, f"rate_limited:{row.id}:{window}",
                         f"⚠️ Key {who} hit the provider's rate limit {_window_rate_hits(state)} times "
                         f"in this window.", row.id)
    raise ValueError(f"unknown key alert {kind!r}")


def _window_rate_hits(state: KeyState) -> int:
    return state.row.rate_hits_today if state.row.window_start == state.window_start else 0


def pool_alerts(previous: list[int] | None, ranking: list[int], generation: int, *, keys: int,
                frees_up_at: dt.datetime | None, now: dt.datetime) -> list[AlertSpec]:
    """Alerts for a newly published ranking: the pool ran dry, or it is usable again."""
    if not ranking and keys and (previous is None or previous):
        if frees_up_at is None:
            when = "No key will free up by itself: fix or enable one (`tokenpool keys`)."
        else:
            when = (f"The first frees up at {frees_up_at:%Y-%m-%d %H:%M} UTC "
                    f"(in {format_duration(frees_up_at - now)}).")
        return [AlertSpec("pool_exhausted", f"pool_exhausted:{generation}",
                          f"🚨 All {keys} keys are exhausted or unusable; replies are paused. {when}")]
    if ranking and previous is not None and not previous:
        return [AlertSpec("pool_healthy", f"pool_healthy:{generation}",
                          f"✅ The pool is healthy again: {len(ranking)} key(s) usable.")]
    return []


def leadership_alert(holder: str, term: int, previous_holder: str) -> AlertSpec:
    return AlertSpec("worker_takeover", f"takeover:{term}",
                     f"👑 Worker {holder} took over leadership (term {term}) from {previous_holder}, "
                     "which stopped renewing its lease.")


def write_alerts(specs: list[AlertSpec], now: dt.datetime) -> int:
    """Put the alerts in the outbox (inside the leader's fenced transaction); returns how many were new.

    A few go through `enqueue_alert` one by one; a storm (a new leader finding thousands of
    keys LOW at once) is checked and inserted in bulk, with the same insert-or-ignore rule.
    """
    if len(specs) <= _BULK_FROM:
        return sum(enqueue_alert(s.kind, s.dedupe_key, s.text, key_id=s.key_id, now=now) for s in specs)
    fresh = {s.dedupe_key[:200]: s for s in specs}
    keys = list(fresh)
    for i in range(0, len(keys), _CHUNK):
        for (known,) in tuple_rows(Alert.select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys[i:i + _CHUNK]))):
            fresh.pop(known, None)
    rows = [(now, s.kind, key, s.text, s.key_id) for key, s in fresh.items()]
    for i in range(0, len(rows), _CHUNK):
        (Alert.insert_many(rows[i:i + _CHUNK], fields=[Alert.created_at, Alert.kind, Alert.dedupe_key, Alert.text,
                                                       Alert.key])
         .on_conflict_ignore().execute())
    return len(rows)
