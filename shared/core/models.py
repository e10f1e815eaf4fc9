"""The tables every process shares. All times are naive UTC datetimes.

Money is stored as whole nano-dollars (1e-9 USD) in integer columns, so sums are exact.
A key is known by its fingerprint, label and masked form; never by its secret.
"""
from __future__ import annotations

import datetime as dt

import peewee as pw

from shared.core.db import database
from shared.core.plain_text import PlainCharField, PlainTextField


def utcnow() -> dt.datetime:
    """Now, as the naive UTC datetime every table stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class ApiKey(BaseModel):
    """One key of the pool, with its counters for the current window and for all time."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    fingerprint = pw.CharField(max_length=32, unique=True)
    label = pw.CharField(max_length=100)
    masked = pw.CharField(max_length=32)
    position = pw.IntegerField(default=0)            # order in config
    base_url = pw.CharField(max_length=500, default="")
    daily_token_limit = pw.BigIntegerField()
    reset_mode = pw.CharField(max_length=16, default="rolling")
    window_anchor = pw.DateTimeField()               # window k = [anchor + k*24h, anchor + (k+1)*24h)
    in_config = pw.BooleanField(default=True)         # false: removed from config, history kept
    disabled = pw.BooleanField(default=False)         # config_disabled OR operator_disabled
    config_disabled = pw.BooleanField(default=False)  # `enabled = false` in the pool's config
    operator_disabled = pw.BooleanField(default=False)  # `tokenpool keys disable`
    settings_owner = pw.CharField(max_length=16, default="")  # "worker" once the pool's config wrote them
    invalid = pw.BooleanField(default=False)
    invalid_reason = pw.CharField(max_length=200, default="")
    exhausted_window = pw.DateTimeField(null=True)    # provider said "insufficient_quota" in this window
    cooldown_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    # Counters of the window that starts at `window_start` (stale once the clock passes it).
    used_today = pw.BigIntegerField(default=0)
    input_today = pw.BigIntegerField(default=0)
    cached_today = pw.BigIntegerField(default=0)
    output_today = pw.BigIntegerField(default=0)
    calls_today = pw.BigIntegerField(default=0)
    rate_hits_today = pw.BigIntegerField(default=0)
    errors_today = pw.BigIntegerField(default=0)
    cost_today_nanousd = pw.BigIntegerField(default=0)
    unpriced_today = pw.BigIntegerField(default=0)    # tokens of models without a known price
    # Declared after the counters on purpose: MySQL applies an UPDATE's assignments left to
    # right, and the counters' CASE must compare against the window before it moves.
    window_start = pw.DateTimeField(null=True)

    # Lifetime counters.
    total_tokens = pw.BigIntegerField(default=0)
    total_input = pw.BigIntegerField(default=0)
    total_cached = pw.BigIntegerField(default=0)
    total_output = pw.BigIntegerField(default=0)
    total_calls = pw.BigIntegerField(default=0)
    total_rate_hits = pw.BigIntegerField(default=0)
    total_errors = pw.BigIntegerField(default=0)
    total_cost_nanousd = pw.BigIntegerField(default=0)
    total_unpriced = pw.BigIntegerField(default=0)

    last_used_at = pw.DateTimeField(null=True)
    last_error = pw.CharField(max_length=200, default="")
    last_error_at = pw.DateTimeField(null=True)

    # Live rate-limit snapshot from the provider's x-ratelimit-* headers.
    rl_remaining_requests = pw.BigIntegerField(null=True)
    rl_remaining_tokens = pw.BigIntegerField(null=True)
    rl_limit_requests = pw.BigIntegerField(null=True)
    rl_limit_tokens = pw.BigIntegerField(null=True)
    rl_reset_requests_at = pw.DateTimeField(null=True)
    rl_reset_tokens_at = pw.DateTimeField(null=True)
    rl_updated_at = pw.DateTimeField(null=True)

    # Written by the worker: the status as of its last tick (readers may recompute).
    status = pw.CharField(max_length=16, default="FRESH")
    status_changed_at = pw.DateTimeField(null=True)


class UsageEvent(BaseModel):
    """One tracked call: what it cost and how it ended."""
    id = pw.BigAutoField()
    call_id = pw.CharField(max_length=32, unique=True)   # makes recording idempotent
    at = pw.DateTimeField(index=True)
    key = pw.ForeignKeyField(ApiKey, backref="events", on_delete="CASCADE")
    window_start = pw.DateTimeField()                     # the key's window this call counted in
    bot = pw.CharField(max_length=64)
    operation = pw.CharField(max_length=64)
    model = pw.CharField(max_length=100)
    input_tokens = pw.IntegerField(default=0)             # includes cached tokens, as OpenAI reports
    cached_tokens = pw.IntegerField(default=0)
    output_tokens = pw.IntegerField(default=0)            # includes reasoning tokens
    reasoning_tokens = pw.IntegerField(default=0)
    total_tokens = pw.IntegerField(default=0)
    cost_nanousd = pw.BigIntegerField(default=0)
    unpriced_tokens = pw.IntegerField(default=0)          # all its tokens, when no price is known for its model
    duration_ms = pw.IntegerField(default=0)
    outcome = pw.CharField(max_length=32)
    error_code = pw.CharField(max_length=100, default="")
    chat_id = pw.BigIntegerField(null=True)
    estimated = pw.BooleanField(default=False)

    class Meta:
        indexes = ((("key", "at"), False),)


class RollupSums(BaseModel):
    """The sums every rollup keeps (a base for the rollup tables; it has no table itself)."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    calls = pw.BigIntegerField(default=0)
    ok_calls = pw.BigIntegerField(default=0)
    error_calls = pw.BigIntegerField(default=0)
    rate_hits = pw.BigIntegerField(default=0)
    input_tokens = pw.BigIntegerField(default=0)
    cached_tokens = pw.BigIntegerField(default=0)
    output_tokens = pw.BigIntegerField(default=0)
    reasoning_tokens = pw.BigIntegerField(default=0)
    total_tokens = pw.BigIntegerField(default=0)
    cost_nanousd = pw.BigIntegerField(default=0)
    unpriced_tokens = pw.BigIntegerField(default=0)  # tokens of calls to models without a known price
    duration_ms = pw.BigIntegerField(default=0)


class DailyRollup(RollupSums):
    """Sums of events per UTC day x key x bot x model x operation; kept after events are pruned."""
    day = pw.DateField()
    key = pw.ForeignKeyField(ApiKey, backref="rollups", on_delete="CASCADE")
    bot = pw.CharField(max_length=64)
    model = pw.CharField(max_length=100)
    operation = pw.CharField(max_length=64)

    class Meta:
        indexes = ((("day", "key", "bot", "model", "operation"), True),)


class KeyRanking(BaseModel):
    """A ranking of eligible keys published by the leading worker; the newest generation wins."""
    generation = pw.BigIntegerField(primary_key=True)
    key_ids = pw.TextField()                              # JSON list of ApiKey ids, best first
    policy = pw.CharField(max_length=32)
    published_at = pw.DateTimeField(default=utcnow)
    published_by = pw.CharField(max_length=128)


class KeyReset(BaseModel):
    """A persisted reset of one key's window; unique, so no window is reset twice."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    key = pw.ForeignKeyField(ApiKey, on_delete="CASCADE")
    window_start = pw.DateTimeField()
    reset_at = pw.DateTimeField(default=utcnow)
    reset_by = pw.CharField(max_length=128)

    class Meta:
        indexes = ((("key", "window_start"), True),)


class Lease(BaseModel):
    """Leadership: the holder acts until `expires_at`; `term` grows on every takeover."""
    name = pw.CharField(max_length=64, primary_key=True)
    holder = pw.CharField(max_length=128, default="")
    term = pw.BigIntegerField(default=0)
    acquired_at = pw.DateTimeField(null=True)
    expires_at = pw.DateTimeField(null=True)
    locked = pw.BooleanField(default=False)               # the holder holds the PostgreSQL advisory lock


class Heartbeat(BaseModel):
    """Liveness of every process (worker or bot), for `.stats` and `doctor`."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    kind = pw.CharField(max_length=16)                    # "worker" or "bot"
    name = pw.CharField(max_length=128)
    host = pw.CharField(max_length=128, default="")
    pid = pw.IntegerField(default=0)
    started_at = pw.DateTimeField(default=utcnow)
    last_seen = pw.DateTimeField(default=utcnow)
    info = pw.TextField(default="{}")                     # JSON: role, version, ...

    class Meta:
        indexes = ((("kind", "name"), True),)


class Alert(BaseModel):
    """The outbox: the worker writes, one bot claims and delivers each row once."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    created_at = pw.DateTimeField(default=utcnow, index=True)
    kind = pw.CharField(max_length=32)
    dedupe_key = pw.CharField(max_length=200, unique=True)
    key = pw.ForeignKeyField(ApiKey, null=True, on_delete="SET NULL")
    text = pw.TextField()
    claimed_by = pw.CharField(max_length=128, null=True)
    claimed_at = pw.DateTimeField(null=True)
    delivered_at = pw.DateTimeField(null=True)


class Setting(BaseModel):
    """Small runtime switches shared by processes (scope "global" or a bot's name)."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    scope = pw.CharField(max_length=64)
    name = pw.CharField(max_length=64)
    value = pw.TextField()
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("scope", "name"), True),)


class ChatRollup(RollupSums):
    """Sums of the events that carry a chat id, per UTC day x key x bot x chat (reports' "by chat").

    Kept like DailyRollup (after events are pruned) and written in the same transaction.
    """
    day = pw.DateField()
    key = pw.ForeignKeyField(ApiKey, backref="chat_rollups", on_delete="CASCADE")
    bot = pw.CharField(max_length=64)
    chat_id = pw.BigIntegerField()

    class Meta:
        indexes = ((("day", "key", "bot", "chat_id"), True),)


class ChatMessage(BaseModel):
    """A private-chat message kept as auto-reply context (the bot trims old ones per chat)."""
    id = pw.BigAutoField()
    bot = pw.CharField(max_length=64)
    chat_id = pw.BigIntegerField()
    message_id = pw.BigIntegerField()
    role = pw.CharField(max_length=16)                    # "contact", "owner" or "auto"
    text = PlainTextField()
    at = pw.DateTimeField()

    class Meta:
        indexes = ((("bot", "chat_id", "message_id"), True),)


class HandledMessage(BaseModel):
    """One row per incoming message a bot decided about; the unique row is the claim."""
    id = pw.BigAutoField()
    bot = pw.CharField(max_length=64)
    chat_id = pw.BigIntegerField()
    message_id = pw.BigIntegerField()
    decided_at = pw.DateTimeField(index=True)             # when the bot first saw it
    outcome = pw.CharField(max_length=32)                 # "pending", "claimed", "replied", "merged" or why not
    kind = pw.CharField(max_length=8, default="message")  # "message" (a contact's) or "command" (the owner's)
    text = PlainTextField(null=True)                      # what it said (for bursts and the digest)
    received_at = pw.DateTimeField(null=True)             # Telegram's date of the message
    claimed_by = pw.CharField(max_length=128, default="")  # the process answering it now
    reply_id = pw.BigIntegerField(null=True)              # our reply that answered it (also when merged)
    settled_at = pw.DateTimeField(null=True)
    detail = PlainCharField(max_length=200, default="")    # more about the outcome (an error, a delay)

    class Meta:
        indexes = ((("bot", "chat_id", "message_id"), True), (("bot", "outcome"), False))


class ChatState(BaseModel):
    """Per bot and chat: the owner's allow/deny rule and the auto-reply pacing state."""
    id = pw.AutoField()                               # the key peewee would add, made explicit
    bot = pw.CharField(max_length=64)
    chat_id = pw.BigIntegerField()
    rule = pw.CharField(max_length=8, default="")         # "", "allow" or "deny"
    label = PlainCharField(max_length=100, default="")    # the chat's display name, kept up to date
    last_reply_at = pw.DateTimeField(null=True)
    last_incoming_at = pw.DateTimeField(null=True)
    replies = pw.BigIntegerField(default=0)
    fast_exchanges = pw.IntegerField(default=0)           # quick answers to our replies, in a row
    paused_until = pw.DateTimeField(null=True)            # loop protection
    updated_at = pw.DateTimeField(default=utcnow)
    username = PlainCharField(max_length=64, default="")  # without "@"; kept up to date
    owner_paused_until = pw.DateTimeField(null=True)      # the owner wrote here (or .pause): hands off
    persona = PlainTextField(null=True)                   # this chat's system prompt (None: config's)
    daily_token_cap = pw.BigIntegerField(null=True)       # tokens per UTC day for this contact
    new_chat = pw.BooleanField(null=True)                 # the chat began with a message the bot saw

    class Meta:
        indexes = ((("bot", "chat_id"), True),)

class Allowance(BaseModel):
    """What a provider grants, shared by the keys that join it (DESIGN invariant 9):
    a limit in tokens and/or requests per window, for the models matching `models`."""
    id = pw.AutoField()
    name = pw.CharField(max_length=100, unique=True)
    window = pw.CharField(max_length=16)               # "utc-day", "rolling" (24 h from anchor) or "minute"
    token_limit = pw.BigIntegerField(null=True)
    request_limit = pw.BigIntegerField(null=True)
    models = pw.CharField(max_length=1000, default="")  # name patterns, space-separated; empty: any
    anchor = pw.DateTimeField()
    in_config = pw.BooleanField(default=True)


class AllowanceWindow(BaseModel):
    """What one allowance used in one window: tokens and requests of recorded calls."""
    id = pw.AutoField()
    allowance = pw.ForeignKeyField(Allowance, backref="windows", on_delete="CASCADE")
    window_start = pw.DateTimeField()
    tokens_used = pw.BigIntegerField(default=0)
    requests_used = pw.BigIntegerField(default=0)

    class Meta:
        indexes = ((("allowance", "window_start"), True),)


class AllowanceHold(BaseModel):
    """A reservation: a call's worst case held against an allowance window until the call is
    recorded (settled) or `expires_at` passes (its process died)."""
    id = pw.BigAutoField()
    hold_id = pw.CharField(max_length=32, index=True)
    allowance = pw.ForeignKeyField(Allowance, on_delete="CASCADE")
    window_start = pw.DateTimeField()
    tokens = pw.BigIntegerField(default=0)
    requests = pw.IntegerField(default=0)
    expires_at = pw.DateTimeField()

    class Meta:
        indexes = ((("allowance", "window_start", "expires_at"), False),)


class KeyHold(BaseModel):
    """A reservation against a key's own daily limit (the key as its own allowance), settled
    with the call or ignored once `expires_at` passes."""
    id = pw.BigAutoField()
    hold_id = pw.CharField(max_length=32, index=True)
    key = pw.ForeignKeyField(ApiKey, on_delete="CASCADE")
    window_start = pw.DateTimeField()
    tokens = pw.BigIntegerField(default=0)
    expires_at = pw.DateTimeField()

    class Meta:
        indexes = ((("key", "window_start", "expires_at"), False),)


class BudgetGate(BaseModel):
    """One row per enforced budget scope ("pool" or "key:<label>"), locked by reservers."""
    id = pw.AutoField()
    scope = pw.CharField(max_length=110, unique=True)


class BudgetHold(BaseModel):
    """A call's worst case held against an enforced budget's period until it is recorded."""
    id = pw.BigAutoField()
    hold_id = pw.CharField(max_length=32, index=True)
    scope = pw.CharField(max_length=110)
    period = pw.CharField(max_length=8)                # "day" or "month" (UTC)
    period_start = pw.DateField()
    tokens = pw.BigIntegerField(default=0)
    cost_nanousd = pw.BigIntegerField(default=0)
    expires_at = pw.DateTimeField()

    class Meta:
        indexes = ((("scope", "period", "period_start", "expires_at"), False),)


class KeyAllowance(BaseModel):
    """Which keys draw on which allowance (from config), for reports."""
    id = pw.AutoField()
    key = pw.ForeignKeyField(ApiKey, on_delete="CASCADE")
    allowance = pw.ForeignKeyField(Allowance, on_delete="CASCADE")

    class Meta:
        indexes = ((("key", "allowance"), True),)


ALL_MODELS = [ApiKey, UsageEvent, DailyRollup, KeyRanking, KeyReset, Lease, Heartbeat, Alert, Setting,
              ChatRollup,
              ChatMessage, HandledMessage, ChatState,
              Allowance, AllowanceWindow, AllowanceHold, KeyAllowance, KeyHold, BudgetGate, BudgetHold]

