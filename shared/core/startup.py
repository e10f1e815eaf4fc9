"""What every process does first: load config, open the database, then either migrate and
register its keys (`open_runtime`: bots, the worker, commands that write) or only check the
schema on a read-only connection (`open_readonly`: reports, exports, charts, key listings,
monitor, dashboard; docs/design.md invariant 14)."""
from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from shared.core.config import Config, load_config
from shared.core.db import connect_database, retrying
from shared.core.keys import KeyRing, sync_keys
from shared.core.schema import ensure_schema, require_current_schema


@dataclass
class Runtime:
    config: Config
    db: pw.Database
    keyring: KeyRing


def open_runtime(config: Config | None = None, *, config_path: str | None = None,
                 sync: bool = True, cache_kib: int | None = None) -> Runtime:
    """Connect, migrate (or refuse a newer schema) and register this process's keys.
    `cache_kib`: SQLite's page cache per connection (see connect_database; bots pass BOT_CACHE_KIB)."""
    config = config or load_config(config_path)
    db = connect_database(config.database_url, busy_timeout_seconds=config.database.busy_timeout_seconds,
                          cache_kib=cache_kib)
    retrying(ensure_schema, db, what="migrating the schema")
    keyring = retrying(sync_keys, config, what="syncing keys") if sync else KeyRing([])
    return Runtime(config=config, db=db, keyring=keyring)



def open_readonly(config: Config | None = None, *, config_path: str | None = None) -> Runtime:
    """Connect read-only; neither migrate nor register keys; refuse a schema that is behind."""
    config = config or load_config(config_path)
    db = connect_database(config.database_url, busy_timeout_seconds=config.database.busy_timeout_seconds,
                          read_only=True)
    retrying(require_current_schema, db, what="reading the schema")
    return Runtime(config=config, db=db, keyring=KeyRing([]))
