"""Fresh, isolated databases for tests: SQLite always, PostgreSQL and MariaDB when their
URLs are set (TOKENPOOL_TEST_PG_URL / TOKENPOOL_TEST_MYSQL_URL).

Each PostgreSQL test gets its own schema and each MySQL test its own database, so tests
never see each other's rows. With TOKENPOOL_REQUIRE_BACKENDS=1 (CI), a backend whose URL
is missing or unreachable fails the test instead of skipping it.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from urllib.parse import urlparse, urlunparse

import peewee
import pytest
from playhouse import db_url

BACKENDS = ("sqlite", "postgres", "mysql")
ENV = {"postgres": "TOKENPOOL_TEST_PG_URL", "mysql": "TOKENPOOL_TEST_MYSQL_URL"}


def _unavailable(backend: str, reason: str):
    if os.environ.get("TOKENPOOL_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{backend} is required in CI but {reason}", pytrace=False)
    pytest.skip(f"{backend}: {reason}")


@contextlib.contextmanager
def fresh_database_url(backend: str, tmp_path):
    """Yield a URL to an empty database of `backend`; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tokenpool-test.db'}"
        return
    base = os.environ.get(ENV[backend])
    if not base:
        _unavailable(backend, f"{ENV[backend]} is not set")
    name = "tp_" + uuid.uuid4().hex[:12]
    try:
        admin = db_url.connect(base)
        admin.connect()
    except peewee.OperationalError as exc:
        _unavailable(backend, f"cannot connect to {ENV[backend]}: {str(exc).strip().splitlines()[0]}")
    try:
        if backend == "postgres":
            admin.execute_sql(f"CREATE SCHEMA {name}")
            url = _with_query(base, f"options=-csearch_path%3D{name}")
        else:
            admin.execute_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            url = urlunparse(urlparse(base)._replace(path="/" + name))
        yield url
    finally:
        if backend == "postgres":
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        else:
            admin.execute_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def _with_query(url: str, query: str) -> str:
    parts = urlparse(url)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunparse(parts._replace(query=joined))


def session_id(db: peewee.Database) -> int:
    """The server's id for this thread's connection to `db` (PostgreSQL or MySQL)."""
    sql = "SELECT pg_backend_pid()" if isinstance(db, peewee.PostgresqlDatabase) else "SELECT CONNECTION_ID()"
    return int(db.execute_sql(sql).fetchone()[0])


def waits_for_a_lock(url: str, session: int) -> bool:
    """Whether the server session `session` is waiting for a row lock now (asked on a connection of its own)."""
    probe = db_url.connect(url)
    try:
        if isinstance(probe, peewee.PostgresqlDatabase):
            sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        else:
            sql = ("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                   "WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'")
        return probe.execute_sql(sql, (session,)).fetchone()[0] > 0
    finally:
        probe.close()
