"""Selection policies: which eligible key bots should try first. Pure functions of values.

- sticky (default): keep the current key while it is eligible; then the next one in config
  order (wrapping around), so the pool is used key by key ("Currently using key #3").
- round-robin: the least recently used key first, so consecutive ticks spread the load.
- most-remaining: the key with the most allowance left first.

Whatever the policy, a key with less left than `headroom` (the expected size of one call)
is not ranked first while another key has room: it goes behind every key that has.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

POLICIES = ("sticky", "round-robin", "most-remaining")
_NEVER = dt.datetime.min


@dataclass(frozen=True)
class Candidate:
    """An eligible key as the policies see it."""
    id: int
    position: int                      # order in config
    left: int                          # tokens left in the current window
    last_used_at: dt.datetime | None = None


def rank(policy: str, candidates: Sequence[Candidate], *, current: Candidate | None = None,
         headroom: int = 0) -> list[int]:
    """Ids of `candidates`, best first. `current` is the key ranked first last time (eligible
    or not; only its position matters to `sticky`)."""
    if policy == "sticky":
        ordered = _sticky(candidates, current)
    elif policy == "round-robin":
        ordered = sorted(candidates, key=lambda c: (c.last_used_at or _NEVER, c.position, c.id))
    elif policy == "most-remaining":
        ordered = sorted(candidates, key=lambda c: (-c.left, c.position, c.id))
    else:
        raise ValueError(f"unknown policy {policy!r}")
    roomy = [c.id for c in ordered if c.left >= headroom]
    tight = [c.id for c in ordered if c.left < headroom]
    return roomy + tight


def signature(policy: str, candidate: Candidate | None, headroom: int) -> tuple | None:
    """What `policy` looks at in one key (None: not a candidate). A key whose signature did
    not change cannot change the ranking, so the ranking need not be recomputed."""
    if candidate is None:
        return None
    roomy = candidate.left >= headroom
    if policy == "round-robin":
        return candidate.position, roomy, candidate.last_used_at
    if policy == "most-remaining":
        return candidate.position, roomy, candidate.left
    return candidate.position, roomy


def _sticky(candidates: Sequence[Candidate], current: Candidate | None) -> list[Candidate]:
    ordered = sorted(candidates, key=lambda c: (c.position, c.id))
    if current is None:
        return ordered
    start = (current.position, current.id)
    return ([c for c in ordered if (c.position, c.id) >= start]
            + [c for c in ordered if (c.position, c.id) < start])
