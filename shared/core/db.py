"""The database: one URL, one place where the backends differ.

SQLite is the embedded default (WAL, busy timeout, NORMAL sync, foreign keys, and
write transactions that take the lock up front so concurrent writers queue instead
of failing with "database is locked"). PostgreSQL and MySQL/MariaDB are reached with
the same URL syntax through `playhouse.db_url`.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlparse

import peewee
from playhouse import db_url

from shared.core.backoff import backoff_delay
from shared.core.config import user_data_dir

log = logging.getLogger("tokenpool.db")

# Every model binds to this proxy; `connect_database` points it at the real database.
database = peewee.DatabaseProxy()

# Errors that mean "the database is not reachable right now", worth a retry.
TRANSIENT_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


class DatabaseUnavailable(Exception):
    """The database could not be reached after all retries."""


class DatabaseFileGone(peewee.OperationalError):
    """The SQLite file this process opened is no longer at its path (deleted or replaced):
    whatever it wrote now would land in a file nobody will ever read."""


class DatabaseUrlError(ValueError):
    """A database URL the user must fix (unsupported scheme, a folder that does not exist)."""


class DatabaseMissing(DatabaseUrlError):
    """A read-only look at an SQLite database that was never created (`tokenpool migrate` makes it)."""


# SQLite's page caches, sized on purpose. Each connection keeps the pages it has read, up to its
# cache_size (SQLite's default: 2,000 KiB). A bot's database thread filled its cache slowly: the
# events, their rollups and the chats' records grow at their tail, new pages every minute (~30 KiB
# a minute at bench/soak.py's 80 calls a minute), so the bot's memory crept up for an hour and more
# before the cap was reached. With 256 KiB the cap is reached within minutes and then holds
# (README, Performance). It costs no measured speed: a booking reads a few dozen pages (key rows,
# counters, rollups, the tail of the events and their indexes), and a page read again comes from
# the OS's file cache, not the disk; a cache is dropped anyway whenever another connection writes.
INLINE_CACHE_KIB = 256      # the inline twin (shared.core.db_executor.run_inline): picks, bookings
BOT_CACHE_KIB = 256         # a bot's own connections (open_runtime): its database thread's, start-up's


def backend_of(db: peewee.Database) -> str:
    if isinstance(db, peewee.SqliteDatabase):
        return "sqlite"
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgres"
    if isinstance(db, peewee.MySQLDatabase):
        return "mysql"
    raise ValueError(f"unsupported database {type(db).__name__}")


def connect_database(url: str, *, busy_timeout_seconds: float = 10.0, bind: bool = True,
                     idle_transaction_seconds: float | None = None, read_only: bool = False,
                     cache_kib: int | None = None) -> peewee.Database:
    """Open the database named by `url` and (by default) bind the models to it.

    No lock outlives its holder for long: on PostgreSQL a statement waits for a lock at most
    `busy_timeout_seconds` (then fails, and is retried like any outage), and the server
    ends a session left idle inside a transaction for `idle_transaction_seconds` (default:
    the busy timeout), so a frozen process's locks (and its advisory lock) are released.

    `read_only`: every write is refused by the database itself (SQLite `mode=ro`, a
    read-only session on PostgreSQL and MySQL), and nothing is created: not the file, not
    its folder (docs/design.md invariant 14).

    `cache_kib`: on SQLite, each connection's page cache at most (PRAGMA cache_size); None
    leaves SQLite's default (2,000 KiB). Ignored by the other backends."""
    scheme = urlparse(url).scheme
    options: dict = {}
    if scheme.startswith("sqlite"):
        path = db_url.parse(url)["database"]
        options["pragmas"] = {"busy_timeout": int(busy_timeout_seconds * 1000), "foreign_keys": 1}
        if cache_kib is not None:
            options["pragmas"]["cache_size"] = -cache_kib        # negative: KiB, not pages
        if read_only:
            file = Path(path).expanduser()
            if path == ":memory:" or not file.is_file():
                raise DatabaseMissing(f"no database at {path} (`tokenpool migrate` creates it)")
            options.update(database=f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)
        else:
            if path != ":memory:":
                prepare_sqlite_file(Path(path).expanduser())
                file = Path(path).expanduser().resolve()
                # mode=rw: a connection opened later (a reconnect) never creates an empty
                # database where the file has gone; it fails and says so.
                options.update(database=f"file:{quote(str(file))}?mode=rw", uri=True)
            options["pragmas"].update(journal_mode="wal", synchronous="normal")
        options["timeout"] = busy_timeout_seconds
    elif scheme.startswith("postgres"):
        options["connect_timeout"] = max(1, int(busy_timeout_seconds))
        idle = busy_timeout_seconds if idle_transaction_seconds is None else idle_transaction_seconds
        given = db_url.parse(url).get("options") or ""       # e.g. a search_path in the URL
        options["options"] = " ".join(filter(None, (
            given, f"-c lock_timeout={_milliseconds(busy_timeout_seconds)}",
            f"-c idle_in_transaction_session_timeout={_milliseconds(idle)}",
            "-c default_transaction_read_only=on" if read_only else "")))
    elif scheme.startswith("mysql"):
        # Keep microseconds: window boundaries are compared to the microsecond.
        options["field_types"] = {"DATETIME": "DATETIME(6)"}
        options["charset"] = "utf8mb4"
        # Report rows matched, not rows changed, as the other backends do: an UPDATE that
        # writes the values a row already has still counts (conditional updates rely on it).
        from pymysql.constants import CLIENT
        options["client_flag"] = CLIENT.FOUND_ROWS
        options["connect_timeout"] = max(1, int(busy_timeout_seconds))
        # READ COMMITTED, as PostgreSQL: a transaction that waited for a row lock then reads what
        # was committed meanwhile. InnoDB's default (REPEATABLE READ) reads from a snapshot taken
        # at its first plain read, so a reservation that locked one allowance, read its holds and
        # then waited for the next one's lock did not see the holds committed while it waited.
        options["init_command"] = ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
                                   + (", READ ONLY" if read_only else ""))
    else:
        raise DatabaseUrlError(f"unsupported database URL scheme '{scheme}' "
                               "(use sqlite:///path, postgresql://… or mysql://…)")
    db = db_url.connect(url, **options)
    if scheme.startswith("sqlite") and not read_only and path != ":memory:":
        identity = os.stat(file)
        db.tokenpool_file = (file, identity.st_dev, identity.st_ino)   # see check_database_file
    if bind:
        database.initialize(db)
    return db


def _milliseconds(seconds: float) -> int:
    return max(1, min(int(seconds * 1000), 2**31 - 1))


def prepare_sqlite_file(path: Path) -> None:
    """Owner-only folder and file: the database holds chat texts.

    Only the file's own folder is created (mode 0700), and only inside a folder that exists:
    a mistyped path is an error, not a tree of new folders. The per-user data folder (used
    when there is no config file) is ours, not typed: it is made with its parents. The file
    is created 0600 before SQLite opens it (its -wal and -shm files take the same mode)."""
    folder = path.parent
    if not folder.is_dir():
        if folder.resolve() == user_data_dir().resolve():
            for missing in reversed([folder, *folder.parents]):
                if not missing.is_dir():
                    missing.mkdir(mode=0o700)
        elif not folder.parent.is_dir():
            raise DatabaseUrlError(f"the folder {folder.parent} does not exist: create it, or correct "
                                   "database.url / data_dir")
        folder.mkdir(mode=0o700, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def write_transaction(db: peewee.Database | peewee.DatabaseProxy = database):
    """A transaction that will write: on SQLite it takes the write lock at BEGIN, once the
    file is known to be still in place (`check_database_file`)."""
    target = db.obj if isinstance(db, peewee.DatabaseProxy) else db
    if isinstance(target, peewee.SqliteDatabase):
        check_database_file(target)
        return target.atomic("IMMEDIATE")
    return target.atomic()


class _RollBack(Exception):
    """Ends a `rolled_back` transaction."""


@contextlib.contextmanager
def rolled_back(db: peewee.Database) -> Iterator[None]:
    """A write transaction on `db` that is rolled back at its end, however it ends: for the
    rehearsals at start, which run real statements and keep nothing. Refused inside an open
    transaction, whose work the rollback would undo. The body may await: nothing else may use
    `db` meanwhile (its work would be rolled back too)."""
    if db.in_transaction():
        raise RuntimeError("a rehearsal inside an open transaction would roll that transaction back")
    try:
        with write_transaction(db):
            yield
            raise _RollBack
    except _RollBack:
        pass


def begin_write(db: peewee.Database) -> str:
    """The statement that opens a write transaction, as `write_transaction` opens it
    (for code that runs BEGIN … COMMIT itself on one cursor), after the same file check."""
    if isinstance(db, peewee.SqliteDatabase):
        check_database_file(db)
        return "BEGIN IMMEDIATE"
    return "BEGIN"


def inline_twin(db: peewee.Database) -> peewee.SqliteDatabase | None:
    """A second connection to `db`'s SQLite file, for short work done on the event loop's
    own thread (`DatabaseExecutor.run_inline`). It never waits: busy_timeout 0 makes a lock
    held by another connection an error at once (the caller then hands the work to the
    database thread, which waits), and it never checkpoints the WAL itself (a checkpoint's
    fsync would stall the loop; the database thread's connection checkpoints). Its page cache
    is INLINE_CACHE_KIB at most. None for PostgreSQL, MySQL, in-memory and read-only databases."""
    known = getattr(db, "tokenpool_file", None)
    if not isinstance(db, peewee.SqliteDatabase) or known is None:
        return None
    twin = peewee.SqliteDatabase(db.database, uri=True, pragmas={
        "busy_timeout": 0, "foreign_keys": 1, "synchronous": "normal", "wal_autocheckpoint": 0,
        "cache_size": -INLINE_CACHE_KIB})
    twin.tokenpool_file = known       # type: ignore[attr-defined]   # see check_database_file
    return twin


def check_database_file(db: peewee.Database) -> None:
    """Raise DatabaseFileGone when the SQLite file opened at start is no longer at its path.

    SQLite keeps writing into an open file after it was deleted (or replaced by another
    file), and every write "succeeds" into a file that is gone. One stat() per write
    transaction compares the path with the file seen at start; the error is transient for
    the callers, so served calls go to the call journal instead."""
    known = getattr(db, "tokenpool_file", None)
    if known is None:
        return
    path, device, inode = known
    try:
        now = os.stat(path)
    except FileNotFoundError:
        raise DatabaseFileGone(f"the database file {path} was deleted while tokenpool was running; nothing more "
                               "is written to it: restore it, or restart to begin a new one") from None
    if (now.st_dev, now.st_ino) != (device, inode):
        raise DatabaseFileGone(f"the database file {path} was replaced by another file while tokenpool was "
                               "running; nothing more is written to the old one: restart to use the new one")


def conflict_target(db: peewee.Database, columns: list) -> dict:
    """`on_conflict` arguments naming the unique columns (MySQL infers them itself)."""
    return {} if isinstance(db, peewee.MySQLDatabase) else {"conflict_target": columns}


def retrying(fn, *args, attempts: int = 8, base_delay: float = 0.1, max_delay: float = 5.0,
             what: str = "database call", **kwargs):
    """Run `fn` in this thread, retrying transient database errors with backoff.

    For blocking callers (start-up, the CLI, the dashboard's thread); the bot's event loop
    uses `DatabaseExecutor` instead. The connection is dropped between attempts so that a
    restarted server is reconnected to. The first failure and the recovery are logged once each.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = fn(*args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            drop_connection()
            if attempt == attempts:
                log.error("%s failed after %d attempts: %s", what, attempts, first_line(exc))
                raise DatabaseUnavailable(f"{what}: database unavailable ({first_line(exc)})") from exc
            if attempt == 1:
                log.warning("%s: database unavailable (%s); retrying", what, first_line(exc))
            time.sleep(backoff_delay(attempt, base_delay, max_delay))
        else:
            if attempt > 1:
                log.info("%s: database reachable again after %d attempts", what, attempt)
            return result
    raise AssertionError("unreachable")


def drop_connection() -> None:
    """Close this thread's connection (if any); the next query opens a fresh one."""
    try:
        target = database.obj
        if target is not None and not target.is_closed():
            target.close()
    except Exception:  # noqa: BLE001 -- the connection is already broken; reopened on next use
        pass


# What the database said, and the same in plain words for the log.
_PLAIN_WORDS = (
    ("database or disk is full", "the disk is full"),
    ("attempt to write a readonly database", "the database file is read-only"),
    ("readonly database", "the database file is read-only"),
    ("unable to open database file", "the database file (or its folder) is missing or cannot be opened"),
    ("disk i/o error", "disk I/O error (the database file may have been deleted or its disk failed)"),
    ("no space left on device", "the disk is full"),
    ("read-only file system", "the file system is read-only"),
)


def first_line(exc: BaseException) -> str:
    """An exception's first line, for one-line log messages, in plain words where the cause
    is the disk or the file (SQLite's "cannot rollback" after a failed write hides the real
    cause, which is then taken from the exception it replaced)."""
    seen = 0
    while "cannot rollback" in str(exc) and exc.__context__ is not None and seen < 8:
        exc, seen = exc.__context__, seen + 1
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    lowered = line.lower()
    for said, plain in _PLAIN_WORDS:
        if said in lowered:
            return f"{plain} ({line})"
    return line


_LOCK_TIMEOUTS = ("database is locked", "database table is locked", "lock timeout", "lock wait timeout")


def lock_wait_timed_out(exc: BaseException) -> bool:
    """The statement waited out the whole busy (lock) timeout behind another session's lock:
    SQLite's "database is locked", PostgreSQL's lock_timeout, MySQL's lock wait timeout.
    Trying again at once would hold the caller for another full timeout."""
    text = str(exc).lower()
    return any(said in text for said in _LOCK_TIMEOUTS)


# --- coordination between processes: row locks, advisory locks, wake-ups ----------------------

_CHANNEL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _target(db) -> peewee.Database:
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db


def locking(query, db=database):
    """`query` as SELECT … FOR UPDATE where the backend has row locks.

    SQLite has none and needs none: `write_transaction` already holds its only write lock.
    """
    return query.for_update() if _target(db).for_update else query


def hold_advisory_lock(name: str, db=database) -> bool | None:
    """Take (or keep) the session-level lock `name`, scoped to the current schema.

    True while this connection holds it, False while another session does, None when the
    backend has no such locks (only PostgreSQL has). Idempotent: calling it again on the
    connection that holds the lock does not stack it. The server releases it when the
    session ends, so a killed holder frees it at once.
    """
    target = _target(db)
    if not isinstance(target, peewee.PostgresqlDatabase):
        return None
    cursor = target.execute_sql(
        "WITH k AS (SELECT ('x' || substr(md5(current_schema() || ':' || %s), 1, 16))::bit(64)::bigint AS id) "
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "  AND pid = pg_backend_pid() AND objsubid = 1 "
        "  AND ((classid::bigint << 32) | objid::bigint) = k.id) "
        "THEN true ELSE pg_try_advisory_lock(k.id) END FROM k", (name,))
    return bool(cursor.fetchone()[0])


def release_advisory_lock(name: str, db=database) -> None:
    target = _target(db)
    if isinstance(target, peewee.PostgresqlDatabase):
        target.execute_sql("SELECT pg_advisory_unlock(('x' || substr(md5(current_schema() || ':' || %s), 1, 16))"
                           "::bit(64)::bigint)", (name,))


@contextlib.contextmanager
def migration_lock(db: peewee.Database, poll_seconds: float = 0.05) -> Iterator[None]:
    """Hold the schema's migration lock: one process migrates, the others wait, then find
    the work done. PostgreSQL: a session advisory lock (scoped to the schema); MySQL: a named
    lock (scoped to the database); SQLite: flock on the database's folder (never on the file
    itself, whose POSIX locks SQLite owns). A killed holder's lock is released with it."""
    db = _target(db)
    if isinstance(db, peewee.PostgresqlDatabase):
        while not hold_advisory_lock("tokenpool-migration", db):
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            release_advisory_lock("tokenpool-migration", db)
    elif isinstance(db, peewee.MySQLDatabase):
        name = "CONCAT(LEFT(DATABASE(), 40), ':tokenpool-migration')"
        while not db.execute_sql(f"SELECT GET_LOCK({name}, 1)").fetchone()[0]:
            pass                                   # GET_LOCK itself waited a second
        try:
            yield
        finally:
            db.execute_sql(f"SELECT RELEASE_LOCK({name})")
    elif isinstance(db, peewee.SqliteDatabase) and (known := getattr(db, "tokenpool_file", None)):
        folder = os.open(known[0].parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)                       # releases the flock
    else:
        yield


def notify(channel: str, db=database) -> bool:
    """Send a notification on `channel`; False when the backend cannot (the caller polls instead)."""
    target = _target(db)
    if not isinstance(target, peewee.PostgresqlDatabase):
        return False
    target.execute_sql("SELECT pg_notify(%s, '')", (_channel(channel),))
    return True


def listen(channel: str, db=database) -> int | None:
    """Subscribe this connection to `channel` (again is harmless) and return a file descriptor
    that becomes readable when a notification arrives; None when the backend cannot notify."""
    target = _target(db)
    if not isinstance(target, peewee.PostgresqlDatabase):
        return None
    target.execute_sql(f"LISTEN {_channel(channel)}")
    return target.connection().fileno()


def take_notifications(db=database) -> int:
    """Consume the notifications that arrived on this connection; returns how many."""
    target = _target(db)
    if not isinstance(target, peewee.PostgresqlDatabase) or target.is_closed():
        return 0
    conn = target.connection()
    # Driver errors become peewee's, as for queries.
    with peewee.__exception_wrapper__:  # type: ignore[attr-defined]  # in peewee, not in its stubs
        conn.poll()
    count = len(conn.notifies)
    conn.notifies.clear()
    return count


def _channel(channel: str) -> str:
    if not _CHANNEL_NAME.match(channel):
        raise ValueError(f"not a notification channel name: {channel!r}")
    return channel


def row_version(db=database):
    """A column expression that changes whenever a row is updated (PostgreSQL's `xmin`), so
    a reader can fetch only the rows that changed; None where the backend has none."""
    target = _target(db)
    if isinstance(target, peewee.PostgresqlDatabase):
        return peewee.SQL("xmin::text")
    return None
