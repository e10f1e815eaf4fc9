"""The SQLite file deleted under a running bot: noticed at the next write, said in plain
words, and the calls served from then on wait in the journal instead of going into the
void; a restart on a new file books them, each once."""
import logging
import os

import pytest
from peewee import OperationalError

from shared.core.accounting import Accountant
from shared.core.db import DatabaseFileGone, connect_database, drop_connection, write_transaction
from shared.core.db_executor import DatabaseExecutor
from shared.core.journal import CallJournal, journal_path
from shared.core.keys import sync_keys
from shared.core.models import UsageEvent
from shared.core.schema import ensure_schema
from tests.conftest import make_config
from tests.reliability.test_journal import _books, _call


def _bot(url, tmp_path):
    ensure_schema(connect_database(url, busy_timeout_seconds=1))
    key_id = sync_keys(make_config(1, url=url)).ids()[0]
    executor = DatabaseExecutor(attempts=2, base_delay=0.01)
    return key_id, executor, Accountant("b", executor=executor, journal=CallJournal(journal_path(tmp_path, "b")))


async def test_calls_after_the_file_is_deleted_go_to_the_journal_and_are_booked_after_a_restart(
        tmp_path, caplog, capsys):
    path = tmp_path / "tokenpool.db"
    url = f"sqlite:///{path}"
    key_id, executor, bot = _bot(url, tmp_path)
    try:
        before = [await bot.arecord(_call(key_id, i)) for i in range(3)]
        assert not any(r.journaled for r in before)
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"tokenpool.db{suffix}").unlink(missing_ok=True)     # an operator's rm
        served = []
        with caplog.at_level(logging.WARNING):
            for i in range(3, 8):
                recorded = await bot.arecord(_call(key_id, i))
                assert recorded.journaled
                served.append(recorded.call_id)
        assert "was deleted while tokenpool was running" in caplog.text
        assert "keeping them in" in caplog.text and "Traceback" not in caplog.text
        await executor.run_once(drop_connection)      # a reconnect does not make a new, empty file
        with pytest.raises(OperationalError, match="unable to open database file"):
            await executor.run_once(lambda: UsageEvent.select().count())
        assert not path.exists()
        assert len(bot.journal) == 5
    finally:
        await executor.run_once(lambda: None)
        executor.close()
    # A restart makes a new database; the journal is booked there, each call once.
    key_id, executor, bot = _bot(url, tmp_path)
    try:
        served.append((await bot.arecord(_call(key_id, 8))).call_id)
        assert not bot.journal.path.exists()
        figures = await executor.run(_books, key_id, served, "SQLite file deleted under a running bot")
    finally:
        executor.close()
    with capsys.disabled():
        print("\n" + figures + f" ({len(before)} calls booked before the deletion went with the file)")


def test_a_replaced_file_is_refused_for_writes_in_plain_words(tmp_path):
    path = tmp_path / "tokenpool.db"
    db = connect_database(f"sqlite:///{path}")
    ensure_schema(db)
    db.close()
    os.replace(path, tmp_path / "old.db")            # another file now stands at the path
    path.write_bytes((tmp_path / "old.db").read_bytes())
    with pytest.raises(DatabaseFileGone, match="was replaced by another file"), write_transaction(db):
        pass
    assert UsageEvent.select().count() == 0          # reads still work
