"""Statements built once with peewee and run many times as plain SQL.

Building a query with peewee costs more than running it on SQLite (about 1 ms for the
accounting transaction, most of it while holding the write lock). So the hot paths build
each statement once per backend, with named slots where values go, and later run the
compiled SQL with the values put in the slots' places.

It relies on one peewee behaviour, pinned by tests/shared/core/test_prepared.py: a
`peewee.Value(obj, converter=False)` is compiled to one placeholder and `obj` itself is
placed in the parameter list, in the order the placeholders appear in the SQL. Slot values
are therefore passed to the driver as given (no field conversion); values written as
constants in the query are converted by peewee when the statement is built.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import peewee as pw

from shared.core.db import begin_write


class Slot:
    """A named hole in a statement, filled at each execution."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


def slot(name: str) -> pw.Value:
    """A placeholder for the value named `name`, usable anywhere peewee takes a value."""
    return pw.Value(Slot(name), converter=False)


class Prepared:
    """One compiled statement. `fields` (for a SELECT) convert each column the way the
    model's fields would, since rows come back from the driver as it hands them out."""

    def __init__(self, query: Any, fields: Iterable[pw.Field] = ()):
        sql, params = query.sql()
        self._params = list(params)
        self._slots = [(i, p.name) for i, p in enumerate(self._params) if isinstance(p, Slot)]
        self.named = bool(self._params) and len(self._slots) == len(self._params)
        if self.named:
            # Every parameter is a slot: the placeholders become named ones, so the values
            # go to the driver as they are, and SQLite binds a value used many times once.
            sql = _named_placeholders(sql, [name for _, name in self._slots])
            self.named = sql is not None
        self.sql = sql if self.named else query.sql()[0]
        self._names = frozenset(name for _, name in self._slots)
        fields = tuple(fields)
        self.convert: Callable[[tuple], tuple] = row_converter(fields) if fields else tuple

    def parameters(self, values: Mapping[str, Any] | None = None) -> Sequence | Mapping[str, Any]:
        if self.named:
            missing = self._names - (values or {}).keys()
            if missing:
                raise KeyError(min(missing))
            return values                   # type: ignore[return-value]
        params = self._params
        if not self._slots:
            return params
        params = params.copy()
        for i, name in self._slots:
            params[i] = values[name]        # type: ignore[index]   # a missing value is a KeyError
        return params

    def execute(self, db: pw.Database, values: Mapping[str, Any] | None = None):
        """Run the statement on `db` (a cursor comes back)."""
        return db.execute_sql(self.sql, self.parameters(values))

    def raw_rows(self, db: pw.Database, values: Mapping[str, Any] | None = None) -> list[tuple]:
        """The rows as the driver returns them (SQLite: datetimes as text, booleans as 0/1)."""
        return list(self.execute(db, values).fetchall())     # pymysql gives a tuple

    def rows(self, db: pw.Database, values: Mapping[str, Any] | None = None) -> list[tuple]:
        """The rows with each column converted by its field (as they come without fields)."""
        convert = self.convert
        return [convert(row) for row in self.raw_rows(db, values)]


def execute_all(db: pw.Database, statements: Iterable[Prepared], values: Mapping[str, Any]) -> None:
    """Run `statements` in order on one cursor, in one write transaction (or in the caller's,
    when one is open), with driver errors turned into peewee's as `execute_sql` turns them.

    The same as `with write_transaction(): statement.execute(...)` for each, without the
    bookkeeping of peewee's nestable `atomic()`, which costs about as much as a short
    statement on SQLite."""
    if db.in_transaction():
        with pw.__exception_wrapper__:  # type: ignore[attr-defined]  # in peewee, not in its stubs
            cursor = db.cursor()
            for statement in statements:
                cursor.execute(statement.sql, values if statement.named else statement.parameters(values))
        return
    begin = begin_write(db)             # before the cursor: a missing SQLite file is not re-created
    with pw.__exception_wrapper__:  # type: ignore[attr-defined]  # in peewee, not in its stubs
        cursor = db.cursor()
        cursor.execute(begin)
        try:
            for statement in statements:     # (a value missing from a named statement: the driver raises)
                cursor.execute(statement.sql, values if statement.named else statement.parameters(values))
            cursor.execute("COMMIT")
        except BaseException:
            _rollback(cursor)
            raise


def rehearse(db: pw.Database, statements: Iterable[Prepared], values: Mapping[str, Any]) -> None:
    """Run `statements` as `execute_all` would, then roll the transaction back: the driver
    (SQLite) compiles them into its statement cache, a server loads the tables, indexes and
    constraint checks they touch, and nothing is kept. For a warm-up at start; refused inside
    an open transaction, whose work the rollback would undo."""
    if db.in_transaction():
        raise RuntimeError("a rehearsal inside an open transaction would roll that transaction back")
    begin = begin_write(db)
    with pw.__exception_wrapper__:  # type: ignore[attr-defined]  # in peewee, not in its stubs
        cursor = db.cursor()
        cursor.execute(begin)
        try:
            for statement in statements:
                cursor.execute(statement.sql, values if statement.named else statement.parameters(values))
        finally:
            _rollback(cursor)


def _rollback(cursor) -> None:
    try:
        cursor.execute("ROLLBACK")
    except Exception:  # the connection is broken: the server ends the transaction itself
        pass


def row_converter(fields: Iterable[pw.Field]) -> Callable[[tuple], tuple]:
    """A function converting a raw row's first columns by `fields` (further columns are dropped)."""
    converters = tuple(field.python_value for field in fields)

    def convert(row: tuple) -> tuple:
        return tuple([to_python(value) for to_python, value in zip(converters, row)])
    return convert


def _named_placeholders(sql: str, names: list[str]) -> str | None:
    """`sql` with its positional placeholders (`?` of SQLite, `%s` of psycopg2 and pymysql)
    replaced by the slots' names, in order; None when the placeholders cannot be told apart
    from the text (then the statement stays positional)."""
    for positional, named in (("?", ":{}"), ("%s", "%({})s")):
        parts = sql.split(positional)
        if len(parts) == len(names) + 1 and (positional == "?" or "%%" not in sql):
            return parts[0] + "".join(named.format(name) + part for name, part in zip(names, parts[1:]))
    return None


class Statements:
    """Prepared statements by name, compiled on first use for each backend (the SQL differs)."""

    def __init__(self) -> None:
        self._cache: dict = {}

    def get(self, db: pw.Database, name: Any, build: Callable[[], Prepared]) -> Prepared:
        key = (type(db), name)
        statement = self._cache.get(key)
        if statement is None:
            statement = self._cache[key] = build()
        return statement
