"""Leadership (docs/design.md invariant 7): one worker acts at a time.

The lease row names its holder, an expiry renewed every tick, and a `term` that grows on
every change of holder. A standby takes the lease over once it has expired. Every write
the leader makes happens in a transaction that first re-checks (and renews) the lease for
its own term (`fence`), so a leader that stalled and was replaced can never reset or
publish again: its term is stale and its transaction is rolled back.

On PostgreSQL the leader also holds a session-level advisory lock, and the lease row says
so (`locked`). The server drops the lock the moment the leader's session ends (kill -9, a
crash), so a standby that wins it knows the leader is gone and takes over at once instead of
waiting for the lease to expire. A standby never keeps the lock, so that the leader (even
one that got the lease by expiry while a stalled predecessor still held the lock) can take it.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from shared.core.db import (
    hold_advisory_lock,
    locking,
    release_advisory_lock,
    write_transaction,
)
from shared.core.models import Lease

log = logging.getLogger("tokenpool.worker.leadership")

LEASE_NAME = "worker"


class LostLeadership(Exception):
    """Another worker holds the lease now; the transaction that found out is rolled back."""


@dataclass(frozen=True)
class Role:
    leader: bool
    term: int
    holder: str                     # who leads (ourselves when `leader`)
    took_over_from: str = ""        # set on the tick we took a lease its holder never released


class Leadership:
    def __init__(self, holder: str, lease_seconds: float, name: str = LEASE_NAME):
        self.holder = holder[:128]
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.name = name
        self.term: int | None = None          # our term while we lead
        self._locked = False                  # this session holds the advisory lock

    @property
    def leading(self) -> bool:
        return self.term is not None

    def claim(self, now: dt.datetime) -> Role:
        """Renew our lease, or take it over if it is free, expired, or its holder's session
        is gone; else stand by."""
        lock = hold_advisory_lock(self._lock_name)       # None where the backend has none
        self._locked = lock is True
        with write_transaction():
            row = self._row()
            expires = now + self.lease
            if row.holder == self.holder:     # holders are unique per process: the lease is ours
                Lease.update(expires_at=expires, locked=self._locked).where(Lease.name == self.name).execute()
                self.term = row.term
                return Role(True, row.term, self.holder)
            expired = not row.holder or row.expires_at is None or row.expires_at <= now
            holder_gone = lock is True and row.locked     # it held the lock; now we do
            if expired or holder_gone:
                term = row.term + 1
                taken = (Lease.update(holder=self.holder, term=term, acquired_at=now, expires_at=expires,
                                      locked=self._locked)
                         .where((Lease.name == self.name) & (Lease.term == row.term)).execute())
                if taken == 1:
                    self.term = term
                    return Role(True, term, self.holder, took_over_from=row.holder)
        self.term = None
        self._release_lock()
        return Role(False, row.term, row.holder)

    def fence(self, now: dt.datetime) -> None:
        """Inside a write transaction: renew our lease for our term, or raise LostLeadership."""
        if self.term is None:
            raise LostLeadership("not leading")
        renewed = (Lease.update(expires_at=now + self.lease)
                   .where((Lease.name == self.name) & (Lease.holder == self.holder) & (Lease.term == self.term))
                   .execute())
        if renewed != 1:
            self.term = None
            raise LostLeadership("the lease moved to another worker")

    def release(self) -> bool:
        """Give the lease up (on shutdown) so a standby need not wait for it to expire."""
        if self.term is None:
            self._release_lock()
            return False
        with write_transaction():
            released = (Lease.update(holder="", expires_at=None, locked=False)
                        .where((Lease.name == self.name) & (Lease.holder == self.holder)
                               & (Lease.term == self.term)).execute())
        self._release_lock()
        self.term = None
        return released == 1

    @property
    def _lock_name(self) -> str:
        return f"tokenpool:{self.name}"

    def _release_lock(self) -> None:
        if self._locked:
            release_advisory_lock(self._lock_name)
            self._locked = False

    def _row(self) -> Lease:
        row = locking(Lease.select().where(Lease.name == self.name)).first()
        if row is None:
            Lease.insert(name=self.name, holder="", term=0).on_conflict_ignore().execute()
            row = locking(Lease.select().where(Lease.name == self.name)).first()
        return row
