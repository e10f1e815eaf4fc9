"""What the failover loop needs from a provider, in neutral terms (docs/design.md invariant 12).

A `Dialect` sends one request with one key, turns every refusal into a `Failure` (an
Outcome the loop acts on), and reads an answer into text, finish reason and `Usage`
(or says why the usage could not be trusted). The loop that picks keys, fails over and
records never sees a provider's exception types, status codes or body shapes.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.core.accounting import Outcome, RateLimitSnapshot
from shared.core.keys import HeldKey
from shared.core.usage import Usage


@dataclass(frozen=True)
class Failure:
    """A refused or failed attempt, classified.

    `outcome` says what it means for the key; `error_code` is what is stored (status and
    the provider's own error type, e.g. `422 budget_exceeded`); `message` is for the user.
    `charged` is the usage the provider may bill although the call failed (a timeout after
    the request went out), recorded flagged `estimated`; `other_keys_may_serve` marks a
    refusal of the request that another key (another provider) may not repeat, such as an
    unknown model."""
    outcome: Outcome
    error_code: str
    message: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    charged: bool = False
    other_keys_may_serve: bool = False


class ProviderFailure(Exception):
    """Raised by a dialect's `send`: the attempt failed as `failure` says."""

    def __init__(self, failure: Failure):
        super().__init__(failure.error_code)
        self.failure = failure


class StreamCut(Exception):
    """A stream broke off after it had started; the message says how."""


@dataclass(frozen=True)
class Answer:
    """A finished answer: its text, how it ended, and its usage (None: absent or not
    believable, see `usage_problem`; the loop then records an estimate)."""
    text: str
    finish_reason: str = ""
    usage: Usage | None = None
    usage_problem: str = ""


@dataclass
class Sent:
    """A request the provider accepted (status 2xx); the body may still be coming."""
    key: HeldKey
    model: str
    headers: Mapping[str, str]
    handle: Any             # the dialect's own response object


class Dialect(Protocol):
    """One provider's way of speaking; see the module docstring."""

    name: str

    async def send(self, key: HeldKey, model: str, messages: list, params: dict, *, stream: bool) -> Sent:
        """Send one request; raise ProviderFailure when it is refused or fails."""
        ...

    async def answer(self, sent: Sent) -> Answer:
        """Read a whole (non-streamed) answer; raise ProviderFailure when it cannot be read."""
        ...

    def stream(self, sent: Sent) -> AsyncGenerator[str | Answer, None]:
        """Text deltas, then one final Answer; raise StreamCut when the stream breaks.
        An endpoint that answers a stream request with a plain body yields it as one delta."""
        ...

    def rate_limits(self, headers: Mapping[str, str], now: dt.datetime) -> RateLimitSnapshot | None:
        ...

    def cooldown_ends_at(self, headers: Mapping[str, str], now: dt.datetime) -> dt.datetime | None:
        """When a rate limit ends, if the headers tell."""
        ...

    async def aclose(self) -> None:
        ...
