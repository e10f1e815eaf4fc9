"""The prepared-statement helper, and the peewee behaviour it relies on (pinned here so a
peewee upgrade that changes it fails these tests, not the accounting in production)."""
from __future__ import annotations

import datetime as dt

import peewee as pw
import pytest

from shared.core.key_rows import KEY_ROW_FIELDS, KeyRow, key_row, key_rows_statement
from shared.core.models import ApiKey, Heartbeat
from shared.core.prepared import Prepared, Slot, Statements, execute_all, slot


def test_peewee_places_a_slot_object_itself_in_the_parameters_in_placeholder_order():
    db = pw.SqliteDatabase(":memory:")
    with ApiKey.bind_ctx(db):
        query = (ApiKey.update({ApiKey.used_today: ApiKey.used_today + slot("add"), ApiKey.label: slot("label")})
                 .where((ApiKey.id == slot("id")) & (ApiKey.disabled == False)))   # noqa: E712
        sql, params = query.sql()
    assert sql.count("?") == len(params) == 4
    # Each slot is in `params` as itself, in the order its placeholder has in the SQL text.
    where = {"add": sql.index('"used_today" + ?'), "label": sql.index('"label" = ?'), "id": sql.index('"id" = ?')}
    assert [p.name for p in params if isinstance(p, Slot)] == sorted(where, key=where.get)
    # The constant was converted by its field when the query was built (BooleanField -> bool).
    assert params[-1] is False


def test_slot_values_reach_the_driver_unconverted(sqlite_db):
    """converter=False: a slot's value skips the field's db_value (a bool stays a bool,
    a string in an integer column stays a string, as SQLite stores what it is given)."""
    statement = Prepared(Heartbeat.insert({Heartbeat.kind: slot("kind"), Heartbeat.name: slot("name"),
                                           Heartbeat.last_seen: slot("at")}))
    at = dt.datetime(2026, 3, 1, 12, 0, 0, 123456)
    statement.execute(sqlite_db, {"kind": "worker", "name": "w1", "at": at})
    assert not statement.named          # the model's defaults are constants beside the slots
    assert Heartbeat.get(Heartbeat.name == "w1").last_seen == at


def test_a_missing_value_is_an_error_not_a_null(db, pool):
    named = Prepared(ApiKey.select(ApiKey.id).where(ApiKey.id == slot("id")))
    positional = Prepared(ApiKey.select(ApiKey.id).where((ApiKey.id == slot("id")) & (ApiKey.position >= 0)))
    assert named.named and not positional.named
    for statement in (named, positional):
        with pytest.raises(KeyError):
            statement.raw_rows(db, {})


def test_a_value_used_in_many_places_is_one_named_parameter(db, pool):
    _config, ring = pool
    statement = Prepared(ApiKey.select(ApiKey.id)
                         .where((ApiKey.id == slot("id")) & (ApiKey.id * ApiKey.id == slot("id") * slot("id"))))
    assert statement.named
    assert statement.raw_rows(db, {"id": ring.ids()[0], "unused": 1}) == [(ring.ids()[0],)]


def test_statements_run_in_one_transaction_that_rolls_back_whole(db, pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    bump = Prepared(ApiKey.update(used_today=ApiKey.used_today + slot("n")).where(ApiKey.id == slot("id")))
    clash = Prepared(Heartbeat.insert(id=slot("hb"), kind="bot", name="x"))
    execute_all(db, [bump, clash], {"n": 5, "id": key_id, "hb": 1})
    with pytest.raises(pw.IntegrityError):
        execute_all(db, [bump, clash], {"n": 7, "id": key_id, "hb": 1})     # same heartbeat id twice
    assert ApiKey.get_by_id(key_id).used_today == 5
    with db.atomic():                                                       # inside the caller's transaction
        execute_all(db, [bump], {"n": 1, "id": key_id})
    assert ApiKey.get_by_id(key_id).used_today == 6


def test_rows_are_converted_by_their_fields_on_every_backend(db, pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    later = dt.datetime(2026, 3, 1, 12, 0, 0, 5)
    ApiKey.update(cooldown_until=later, disabled=True).where(ApiKey.id == key_id).execute()
    statement = Prepared(ApiKey.select(ApiKey.id, ApiKey.cooldown_until, ApiKey.disabled)
                         .where(ApiKey.id == slot("id")), (ApiKey.id, ApiKey.cooldown_until, ApiKey.disabled))
    assert statement.rows(db, {"id": key_id}) == [(key_id, later, True)]
    assert statement.rows(db, {"id": -1}) == []


def test_statements_are_compiled_once_per_backend_and_name():
    built = []
    statements = Statements()

    def build():
        built.append(1)
        return Prepared(ApiKey.select(ApiKey.id))
    sqlite, postgres = pw.SqliteDatabase(":memory:"), pw.PostgresqlDatabase("unused")
    first = statements.get(sqlite, "ids", build)
    assert statements.get(sqlite, "ids", build) is first
    assert statements.get(postgres, "ids", build) is not first
    assert len(built) == 2


def test_key_row_reads_what_the_model_reads_on_every_backend(db, pool):
    _config, ring = pool
    key_id = ring.ids()[1]
    at = dt.datetime(2026, 3, 1, 12, 30, 0, 250)
    ApiKey.update(window_start=at, used_today=42, invalid=True, last_used_at=at, status="ACTIVE",
                  exhausted_window=at).where(ApiKey.id == key_id).execute()
    statement = key_rows_statement(ApiKey.id == slot("id"))
    (raw,) = statement.raw_rows(db, {"id": key_id})
    row = key_row(raw)
    model = ApiKey.get_by_id(key_id)
    assert isinstance(row, KeyRow)
    assert row == tuple(getattr(model, field.name) for field in KEY_ROW_FIELDS)
    assert (row.invalid, row.in_config, row.used_today, row.window_start) == (True, True, 42, at)

