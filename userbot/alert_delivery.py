"""Alert delivery: claim the worker's undelivered alerts and post them to Saved Messages.

Claiming is a conditional UPDATE in the database (`shared.core.outbox.claim_alerts`), so each
alert is won by exactly one bot process; after posting it is marked delivered, and a
failed post gives the claim back for a retry (by this bot or another one).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from shared.core.outbox import claim_alerts, mark_delivered, release_claim

log = logging.getLogger("tokenpool.alerts")

Send = Callable[[str], Awaitable[object]]
Blocking = Callable[..., Awaitable]


def claimer_name(bot: str) -> str:
    """Who claims: unique per process, readable in the database."""
    return f"{bot}@{socket.gethostname()}:{os.getpid()}"[:128]


async def deliver_pending(send: Send, claimer: str, *, run_blocking: Blocking | None = None,
                          limit: int = 10) -> int:
    """Claim up to `limit` alerts, post each with `send`; returns how many were delivered."""
    run_blocking = run_blocking or asyncio.to_thread
    alerts = await run_blocking(claim_alerts, claimer, limit=limit)
    delivered = 0
    for index, alert in enumerate(alerts):
        try:
            await send(alert.text)
        except Exception as exc:
            log.warning("could not post alert %s (%s); it will be retried", alert.id, exc)
            for unsent in alerts[index:]:
                await run_blocking(release_claim, unsent.id, claimer)
            break
        if not await run_blocking(mark_delivered, alert.id, claimer):
            # Our claim went stale and another bot took the alert over while we posted.
            log.warning("alert %s was taken over by another bot while being posted", alert.id)
        delivered += 1
    return delivered


async def deliver_forever(send: Send, claimer: str, *, interval: float, stop: asyncio.Event,
                          run_blocking: Blocking | None = None) -> None:
    """Deliver alerts every `interval` seconds until `stop` is set; errors are logged, not fatal."""
    while not stop.is_set():
        try:
            while await deliver_pending(send, claimer, run_blocking=run_blocking) > 0 and not stop.is_set():
                pass
        except Exception:
            log.exception("alert delivery failed; retrying in %.0f s", interval)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
