"""What a tracked call can raise; every message is written for the user."""
from __future__ import annotations

import datetime as dt


class ClientError(Exception):
    """A call could not be answered; the message is written for the user.
    `steps` are the attempts made on the way (failover.Step), when the client knows them."""

    steps: tuple = ()


class NoKeyAvailable(ClientError):
    """No key can take a call now. `frees_up_at` (naive UTC) is when the first one can,
    or None when none will by itself (all invalid or disabled)."""

    def __init__(self, message: str, frees_up_at: dt.datetime | None = None):
        super().__init__(message)
        self.frees_up_at = frees_up_at


class BudgetExceeded(NoKeyAvailable):
    """An enforced budget (`[budgets] enforce = true`) has no room for the call: calls stop
    until its period ends (`frees_up_at`) or the owner lifts it. `dedupe_key` names the
    budget and its period (one alert each)."""

    def __init__(self, message: str, frees_up_at: dt.datetime | None, dedupe_key: str):
        super().__init__(message, frees_up_at)
        self.dedupe_key = dedupe_key


class ProviderUnavailable(NoKeyAvailable):
    """Every key tried failed with server errors, timeouts or connection errors.

    A NoKeyAvailable, so callers that fall back when no key can serve handle this too."""


class BookingPaused(ClientError):
    """No call is sent while served calls cannot be booked anywhere (the database and the call
    journal both refuse writes); sending resumes by itself once either takes writes again."""


class RequestRejected(ClientError):
    """The API refused the request itself (bad model, bad input); another key would not help.

    `model_unserved`: every key asked said it does not serve the model (a fallback model may)."""

    def __init__(self, message: str, status: int, code: str, *, model_unserved: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.model_unserved = model_unserved


class StreamInterrupted(ClientError):
    """A stream broke off before it finished; `partial_text` is what arrived."""

    def __init__(self, message: str, partial_text: str):
        super().__init__(message)
        self.partial_text = partial_text
