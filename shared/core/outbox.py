"""The alert outbox: the worker enqueues, bots claim and deliver.

Each alert has a `dedupe_key` (e.g. "exhausted:<key>:<window>"), so a transition seen on
many ticks is written once. A bot claims a row with a conditional UPDATE that only one
process can win; a claim not confirmed as delivered within `stale_after` may be taken over.
"""
from __future__ import annotations

import datetime as dt

from shared.core.models import Alert, utcnow

CLAIM_STALE_AFTER = dt.timedelta(minutes=5)


def enqueue_alert(kind: str, dedupe_key: str, text: str, *, key_id: int | None = None,
                  now: dt.datetime | None = None) -> bool:
    """Add an alert unless one with the same dedupe_key exists. True if added."""
    if Alert.select().where(Alert.dedupe_key == dedupe_key[:200]).exists():
        return False
    # Insert-or-ignore: a racing writer of the same alert wins silently.
    Alert.insert(kind=kind, dedupe_key=dedupe_key[:200], text=text, key=key_id,
                 created_at=now or utcnow()).on_conflict_ignore().execute()
    return True


def claim_alerts(claimer: str, *, limit: int = 10, now: dt.datetime | None = None,
                 stale_after: dt.timedelta = CLAIM_STALE_AFTER) -> list[Alert]:
    """Claim up to `limit` undelivered alerts for `claimer`; each row is won by one claimer."""
    now = now or utcnow()
    claimable = (Alert.delivered_at.is_null()
                 & (Alert.claimed_by.is_null() | (Alert.claimed_at < now - stale_after)))
    won = []
    # Read the candidates to the end before updating: on SQLite an UPDATE issued while a
    # SELECT cursor is still open upgrades a stale read snapshot and fails at once with
    # "database is locked" (no busy wait) when another process wrote in between.
    candidates = list(Alert.select().where(claimable).order_by(Alert.id).limit(limit))
    for alert in candidates:
        taken = (Alert.update(claimed_by=claimer, claimed_at=now)
                 .where((Alert.id == alert.id) & claimable).execute())
        if taken == 1:
            alert.claimed_by, alert.claimed_at = claimer, now
            won.append(alert)
    return won


def mark_delivered(alert_id: int, claimer: str, *, now: dt.datetime | None = None) -> bool:
    return bool(Alert.update(delivered_at=now or utcnow())
                .where((Alert.id == alert_id) & (Alert.claimed_by == claimer)).execute())


def release_claim(alert_id: int, claimer: str) -> None:
    """Give an alert back (delivery failed) so that it is retried, by us or another bot."""
    (Alert.update(claimed_by=None, claimed_at=None)
     .where((Alert.id == alert_id) & (Alert.claimed_by == claimer) & Alert.delivered_at.is_null()).execute())
