"""The database drivers a process will not use, kept from loading.

peewee imports every driver it knows when it is itself imported (psycopg2, psycopg,
pymysql, MySQLdb), whichever database the process opens: psycopg2 alone is ~5 MB
resident (libpq and its libraries), for nothing in a bot on SQLite that runs for weeks.
A process that knows its database URL before anything imports peewee (the bot's entry
point, right after reading its config) calls `keep_unused_drivers_out`: peewee then finds
only the driver of the configured backend, and works with it as usual. Once peewee is
loaded it is too late (it keeps what it found), so the call does nothing then; the
process can still use every backend whose driver it has.
"""
from __future__ import annotations

import sys
from urllib.parse import urlparse

# The drivers peewee looks for, by the URL scheme they serve (the scheme starts with the key).
DRIVERS = {"postgres": ("psycopg2", "psycopg2cffi", "psycopg"), "mysql": ("pymysql", "MySQLdb")}


def keep_unused_drivers_out(database_url: str) -> list[str]:
    """Make `import` fail for the drivers of the backends `database_url` does not use, as
    long as peewee is not loaded yet; returns the modules kept out."""
    if "peewee" in sys.modules:
        return []
    scheme = urlparse(database_url).scheme
    kept_out = []
    for prefix, modules in DRIVERS.items():
        if scheme.startswith(prefix):
            continue
        for module in modules:
            if module not in sys.modules:
                sys.modules[module] = None      # type: ignore[assignment]   # `import` raises ImportError
                kept_out.append(module)
    return kept_out
