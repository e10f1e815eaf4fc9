"""Schema versions, with `playhouse.migrations`.

Every process calls `ensure_schema` at start: it applies pending migrations, or refuses
to run against a database that a newer tokenpool has migrated past what it knows.
Read-only commands call `require_current_schema` instead: it never writes, and refuses a
schema that is behind as well. `revert` goes back, never losing a row of a table it keeps.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import peewee as pw
from playhouse.migrations import Runner

from shared.core.db import migration_lock

log = logging.getLogger("tokenpool.schema")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HISTORY_TABLE = "tokenpool_migration"


class SchemaError(Exception):
    """The database schema does not fit this version of tokenpool."""


def runner(db: pw.Database) -> Runner:
    return Runner(db, str(MIGRATIONS_DIR), table_name=HISTORY_TABLE)


def schema_status(db: pw.Database) -> tuple[list[str], list[str], list[str]]:
    """(applied, pending, unknown): unknown ones were applied by a newer tokenpool."""
    rows = runner(db).status()
    applied = [m.name for m in rows if m.applied and m.path]
    pending = [m.name for m in rows if not m.applied]
    unknown = [m.name for m in rows if m.applied and not m.path]
    return applied, pending, unknown


def migrate(db: pw.Database) -> list[str]:
    """Apply pending migrations; returns their names. Safe when several processes race: the
    migration lock lets one migrate at a time, and each looks at what is pending once it holds it."""
    _refuse_newer(db)
    with migration_lock(db):
        _refuse_newer(db)
        done = runner(db).up()
    for name in done:
        log.info("applied migration %s", name)
    return done


def revert(db: pw.Database, target: str | None = None) -> list[str]:
    """Revert the newest migration, or every one back through `target`; returns their names.

    A `down` never loses a row of a table it leaves in place: each runs in its migration's
    transaction beside a count of every table's rows, and one that would lose rows is rolled
    back with a SchemaError. (On SQLite, dropping a column may rebuild its table; a rebuilt
    api_key inside a transaction, where foreign keys cannot be switched off, took every
    usage event, rollup and hold with it through ON DELETE CASCADE.)"""
    with migration_lock(db):
        reverting = runner(db)
        reverting.migrator.migration_context = _keeping_rows(reverting.migrator.migration_context, db)
        done = reverting.down(target)
    for name in done:
        log.info("reverted migration %s", name)
    return done


def revert_to(db: pw.Database, name: str) -> list[str]:
    """Revert every migration applied after `name` (or the one migration it is the unique
    prefix of, e.g. "0030"), leaving the schema at it: what an older tokenpool, whose newest
    migration is `name`, runs against. Returns the reverted names, newest first."""
    applied, _pending, unknown = schema_status(db)
    if unknown:
        raise SchemaError(f"migrated by a newer tokenpool ({', '.join(unknown)}): go back with that "
                          "version's `tokenpool migrate --to`")
    matches = [m for m in applied if m == name] or [m for m in applied if m.startswith(name)]
    if len(matches) != 1:
        known = f"{applied[0]} … {applied[-1]}" if applied else "none"
        raise SchemaError(f"{name!r} is not {'one' if matches else 'an'} applied migration (applied: {known})")
    later = applied[applied.index(matches[0]) + 1:]
    return revert(db, later[0]) if later else []


def _keeping_rows(context, db: pw.Database):
    """`context` (the migrator's transaction around one migration), raising inside it when a
    table that is still there has fewer rows at the end than at the start."""
    @contextlib.contextmanager
    def checked(atomic: bool = True) -> Iterator[None]:
        with context(atomic):
            before = _row_counts(db)
            yield
            after = _row_counts(db)
            lost = {table: (n, after[table]) for table, n in before.items()
                    if after.get(table, n) < n and table != HISTORY_TABLE}
            if lost:
                raise SchemaError("reverting would lose rows (" + ", ".join(
                    f"{table}: {was} -> {now}" for table, (was, now) in sorted(lost.items()))
                    + "); nothing was changed. On SQLite, revert outside any transaction, so that foreign "
                    "keys are off while a table is rebuilt")
    return checked


def _row_counts(db: pw.Database) -> dict[str, int]:
    return {table: int(pw.Table(table).select(pw.fn.COUNT(pw.SQL("*"))).bind(db).scalar())
            for table in db.get_tables()}


def ensure_schema(db: pw.Database) -> None:
    migrate(db)


def require_current_schema(db: pw.Database) -> None:
    """Refuse, without writing anything, a schema this tokenpool cannot read as it is:
    behind (pending migrations) or ahead (migrated by a newer tokenpool)."""
    _refuse_newer(db)
    _applied, pending, _unknown = schema_status(db)
    if pending:
        raise SchemaError(
            f"the database schema is behind this tokenpool (pending migrations: {', '.join(pending)}); "
            "run `tokenpool migrate` (or start the worker or a bot) first")


def _refuse_newer(db: pw.Database) -> None:
    _applied, _pending, unknown = schema_status(db)
    if unknown:
        raise SchemaError(
            "the database was migrated by a newer tokenpool (unknown migrations: "
            f"{', '.join(sorted(unknown))}); upgrade tokenpool on this host before running it")
