import asyncio
import json
import threading

import pytest

from shared.core.accounting import Accountant, CallRecord
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import fingerprint, mask, sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.schema import SchemaError, ensure_schema, runner, schema_status
from shared.tools import cli
from tests.conftest import make_config


def test_migrate_creates_the_schema_and_is_idempotent(db):
    applied, pending, unknown = schema_status(db)
    assert applied and not pending and not unknown
    ensure_schema(db)
    assert schema_status(db)[0] == applied
    assert {"api_key", "usage_event", "daily_rollup", "key_ranking", "lease", "alert"} <= set(db.get_tables())


def test_a_newer_schema_is_refused_with_a_clear_message(db):
    runner(db).History.create(name="9999_from_the_future")
    with pytest.raises(SchemaError, match="newer tokenpool.*9999_from_the_future.*upgrade tokenpool"):
        ensure_schema(db)


def test_fingerprint_and_mask_never_reveal_the_secret():
    secret = "sk-proj-" + "abcdefghij" * 3 + "0123"  # built, so no key-shaped literal is committed
    assert len(fingerprint(secret)) == 16 and fingerprint(secret) == fingerprint(secret)
    assert mask(secret) == "sk-…0123"
    assert mask("short") == "…"


def test_sync_registers_updates_and_keeps_removed_keys(db, db_url):
    config = make_config(3, url=db_url)
    ring = sync_keys(config)
    assert len(ring) == 3 and ApiKey.select().count() == 3
    Accountant("b").record(CallRecord(key_id=ring.ids()[2], bot="b", operation="op", model="m", input_tokens=5))
    fewer = make_config([{"label": "renamed", "api_key": config.keys[0].secret, "daily_token_limit": 7}],
                        url=db_url)
    sync_keys(fewer)            # a bot holding only some keys marks nothing as removed
    assert ApiKey.get_by_id(ring.ids()[2]).in_config is True
    ring2 = sync_keys(fewer, owner=True)   # the worker's config is the pool's
    assert ring2.ids() == [ring.ids()[0]]
    first = ApiKey.get_by_id(ring.ids()[0])
    assert (first.label, first.daily_token_limit, first.in_config) == ("renamed", 7, True)
    removed = ApiKey.get_by_id(ring.ids()[2])
    assert removed.in_config is False and removed.total_tokens == 5
    assert UsageEvent.select().count() == 1


def test_no_secret_is_stored_in_the_database(db, db_url):
    config = make_config(3, url=db_url)
    ring = sync_keys(config)
    Accountant("b").record(CallRecord(key_id=ring.ids()[0], bot="b", operation="op", model="m", input_tokens=5))
    dump = json.dumps([list(ApiKey.select().tuples()), list(UsageEvent.select().tuples())], default=str)
    for key in config.keys:
        assert key.secret not in dump
        assert key.secret[-10:] not in dump


def test_several_processes_registering_the_same_keys_at_once(db, db_url):
    config = make_config(4, url=db_url)
    errors = []

    def register():
        try:
            sync_keys(config)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ApiKey.select().count() == 4


async def test_async_recording_does_not_block_the_event_loop(pool):
    """Bookings handed to the database thread leave the loop free. (On SQLite a booking that
    would not wait is done on the loop itself: tests/shared/core/test_db_executor.py.)"""
    _config, ring = pool
    accountant = Accountant("b", executor=DatabaseExecutor(inline=False))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(accountant.arecord(CallRecord(key_id=ring.ids()[0], bot="b", operation="op",
                                                         model="m", input_tokens=10)) for _ in range(50)))
    task.cancel()
    assert ticks > 50  # the loop kept running while the database worked
    assert ApiKey.get_by_id(ring.ids()[0]).calls_today == 50
    accountant.executor.close()


def test_keys_cli_lists_keys_as_json(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[[keys]]\nlabel = "main"\napi_key = "sk-test-cli-000000000000abcd"\n'
                    'daily_token_limit = 1000\n')
    assert cli.main(["--config", str(path), "migrate"]) == 0       # `keys` only reads: migrate registers
    capsys.readouterr()
    assert cli.main(["--config", str(path), "keys", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["label"] == "main" and row["masked"] == "sk-…abcd" and row["status"] == "FRESH"
    assert row["limit"] == 1000 and row["left"] == 1000
    assert cli.main(["--config", str(path), "keys"]) == 0
    out = capsys.readouterr().out
    assert "main" in out and "FRESH" in out and "sk-test-cli" not in out


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text("[pool]\nreset = 'hourly'\n")
    assert cli.main(["--config", str(path), "keys"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenpool: ") and "'pool.reset' must be one of" in err and "Traceback" not in err
