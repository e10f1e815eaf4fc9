"""Test-only fault injection: with `TOKENPOOL_TEST_KILL_AT=<point>` in its environment the
bot process kills itself with SIGKILL when it reaches that point, so a test can crash a
real process at an exact moment (tests/reliability/test_kill_mid_reply.py). Nothing sets
the variable outside tests; unset, a point costs one comparison.

Points: `after_claim` (a burst is claimed, the AI not yet called) and `after_send` (the
reply is in Telegram, the database not yet told).
"""
from __future__ import annotations

import os
import signal

KILL_AT_ENV = "TOKENPOOL_TEST_KILL_AT"
AFTER_CLAIM = "after_claim"
AFTER_SEND = "after_send"

_KILL_AT = os.environ.get(KILL_AT_ENV, "")


def kill_point(name: str) -> None:
    """Die here, as `kill -9` would, when the environment names this point."""
    if name == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
