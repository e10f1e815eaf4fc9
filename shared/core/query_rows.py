"""The rows of a peewee query as plain dicts or tuples, typed as what they are.

peewee's bundled stubs type `.dicts()` and `.tuples()` as the query itself, so a type checker
reads their rows as model instances; these helpers run the same query and say what comes back.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import peewee as pw


def dict_rows(query: pw.BaseQuery) -> Iterator[dict[str, Any]]:
    """Each row as {column alias: value}."""
    return iter(query.dicts())


def tuple_rows(query: pw.BaseQuery) -> Iterator[tuple[Any, ...]]:
    """Each row as a tuple, in the order of the selected columns."""
    return iter(query.tuples())


def one_dict(query: pw.SelectBase) -> dict[str, Any]:
    """The first row as a dict (raises the model's DoesNotExist when there is none)."""
    return query.dicts().get()


def one_tuple(query: pw.SelectBase) -> tuple[Any, ...]:
    """The first row as a tuple (raises the model's DoesNotExist when there is none)."""
    return query.tuples().get()
