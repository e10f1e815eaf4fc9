"""Going back: a migration's `down` never loses a row of a table it leaves in place.

On SQLite, dropping a column may rebuild the table (SQLite before 3.35 always does); a
rebuilt api_key, inside a transaction where foreign keys cannot be switched off, took every
usage event and rollup with it (ON DELETE CASCADE)."""
from __future__ import annotations

import peewee as pw
import pytest

from shared.core.schema import HISTORY_TABLE, SchemaError, migrate, revert, schema_status
from tests.shared.report_fixtures import history_config, record_history

CALLS = 40


def _counts(db) -> dict[str, int]:
    """Rows by table, but the migration history (which loses a row per migration reverted)."""
    return {t: pw.Table(t).select(pw.fn.COUNT(pw.SQL("*"))).bind(db).scalar() for t in db.get_tables()
            if t != HISTORY_TABLE}


@pytest.mark.parametrize("target", ["0030_unpriced_tokens", "0010_allowances"])
def test_going_down_and_up_again_keeps_every_row(db, db_url, target):
    record_history(history_config(db_url), calls=CALLS)
    before = _counts(db)
    assert before["usage_event"] == CALLS and before["daily_rollup"] > 0
    reverted = revert(db, target)
    assert reverted[-1] == target and target not in schema_status(db)[0]
    after = _counts(db)
    assert after == {t: n for t, n in before.items() if t in after}
    assert migrate(db) == list(reversed(reverted))
    assert {t: n for t, n in _counts(db).items() if t in after} == after


@pytest.mark.parametrize("rebuild", [False, True], ids=["drop-column", "table-rebuild"])
def test_0030_down_on_sqlite_keeps_the_events_even_inside_a_transaction(sqlite_db, sqlite_url, rebuild,
                                                                         monkeypatch):
    record_history(history_config(sqlite_url), calls=CALLS)
    before = _counts(sqlite_db)
    if rebuild:        # as peewee drops a column on SQLite before 3.35: a copy of the table replaces it
        monkeypatch.setattr(sqlite_db, "server_version", (3, 34, 0))
    with sqlite_db.atomic():                   # foreign keys cannot be switched off in here
        if rebuild:
            with pytest.raises(SchemaError, match=r"reverting would lose rows \(.*usage_event: 40 -> 0"):
                revert(sqlite_db, "0030_unpriced_tokens")
        else:
            revert(sqlite_db, "0030_unpriced_tokens")
    after = _counts(sqlite_db)
    assert after["usage_event"] == CALLS
    assert {t: after[t] for t in ("api_key", "daily_rollup", "chat_rollup")} == \
        {t: before[t] for t in ("api_key", "daily_rollup", "chat_rollup")}
    if rebuild:                                # refused whole: 0030 is still applied, its columns there
        assert "0030_unpriced_tokens" in schema_status(sqlite_db)[0]
        assert "unpriced_tokens" in {c.name for c in sqlite_db.get_columns("usage_event")}


def test_0030_down_on_sqlite_rebuilding_tables_outside_a_transaction_keeps_the_events(sqlite_db, sqlite_url,
                                                                                      monkeypatch):
    record_history(history_config(sqlite_url), calls=CALLS)
    before = _counts(sqlite_db)
    monkeypatch.setattr(sqlite_db, "server_version", (3, 34, 0))
    revert(sqlite_db, "0030_unpriced_tokens")
    assert "unpriced_tokens" not in {c.name for c in sqlite_db.get_columns("usage_event")}
    assert {t: n for t, n in _counts(sqlite_db).items() if t in before} == \
        {t: n for t, n in before.items() if t in _counts(sqlite_db)}


def test_migrate_to_goes_back_for_an_older_tokenpool_and_says_what_it_did(db, db_url, tmp_path, capsys):
    from shared.tools import cli
    record_history(history_config(db_url), calls=CALLS)
    before = _counts(db)
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    newest = schema_status(db)[0][-1]
    assert cli.main(["--config", str(config), "migrate", "--to", "0030"]) == 0
    later = [m for m in ("0032_budget_holds", "0031_key_holds") if m <= newest]
    assert capsys.readouterr().out == (f"reverted {len(later)} migration(s): {', '.join(later)}; "
                                       "schema at 0030_unpriced_tokens\n")
    db.close()
    assert schema_status(db)[0][-1] == "0030_unpriced_tokens"
    assert {t: n for t, n in _counts(db).items() if t in before} == {t: before[t] for t in _counts(db)}
    assert cli.main(["--config", str(config), "migrate", "--to", "0030_unpriced_tokens", "--json"]) == 0
    assert '"reverted_now": []' in capsys.readouterr().out             # already there: nothing to do
    assert cli.main(["--config", str(config), "migrate", "--to", "9999"]) == 2
    assert "'9999' is not an applied migration (applied: 0001" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "migrate"]) == 0           # and up again
    assert capsys.readouterr().out.startswith(f"applied {len(later)} migration(s); schema at {newest}")
