"""A key row as status, selection and the worker read it: the columns `status.key_status`,
`status.frees_up_at`, ranking and resets need, as one plain tuple type.

Selection reads these rows before every call and the worker reads thousands per tick, so
they are read as plain values (no model objects) with one column list for everybody.
"""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import peewee as pw

from shared.core.models import ApiKey
from shared.core.prepared import Prepared, row_converter

KEY_ROW_FIELDS = (ApiKey.id, ApiKey.position, ApiKey.label, ApiKey.in_config, ApiKey.disabled, ApiKey.invalid,
                  ApiKey.daily_token_limit, ApiKey.window_anchor, ApiKey.window_start, ApiKey.used_today,
                  ApiKey.calls_today, ApiKey.rate_hits_today, ApiKey.errors_today, ApiKey.exhausted_window,
                  ApiKey.cooldown_until, ApiKey.last_used_at, ApiKey.status)


class KeyRow(NamedTuple):
    """The fields of KEY_ROW_FIELDS, in that order, converted as the model's fields convert."""
    id: int
    position: int
    label: str
    in_config: bool
    disabled: bool
    invalid: bool
    daily_token_limit: int
    window_anchor: dt.datetime
    window_start: dt.datetime | None
    used_today: int
    calls_today: int
    rate_hits_today: int
    errors_today: int
    exhausted_window: dt.datetime | None
    cooldown_until: dt.datetime | None
    last_used_at: dt.datetime | None
    status: str


assert KeyRow._fields == tuple(f.name for f in KEY_ROW_FIELDS)


def key_rows_statement(where: pw.Expression | None = None, *extra: pw.Node) -> Prepared:
    """SELECT of the key-row columns (then any `extra` columns), optionally filtered."""
    query = ApiKey.select(*KEY_ROW_FIELDS, *extra)
    if where is not None:
        query = query.where(where)
    return Prepared(query, KEY_ROW_FIELDS)


_convert = row_converter(KEY_ROW_FIELDS)


def key_row(raw: tuple) -> KeyRow:
    """The KeyRow of a raw row that starts with the KEY_ROW_FIELDS columns."""
    return KeyRow._make(_convert(raw))
