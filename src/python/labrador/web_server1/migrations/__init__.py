"""web_server1's schema: plain SQL files in this package, applied in order, each once.

Files are named ``NNNN_description.sql`` and applied in the order of NNNN. `apply(conn)` applies
the ones not yet recorded in the ``schema_migrations`` table, all in one transaction, after taking
a transaction-scoped advisory lock: instances that start together against one database take turns,
and the second finds nothing left to do. A failing file rolls the whole run back; the error names it.

The service calls `apply` at start; tests (and testinfra, to migrate a template database once)
call it too. `fingerprint()` changes whenever a file does, for keying such a template.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import psycopg

# pg_advisory_xact_lock's key: any fixed bigint no other code on the database uses.
LOCK_KEY = 0x1AB_0001
_FILE_NAME = re.compile(r"^(?P<number>\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = b"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """A migration file is misnamed, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without ".sql", e.g. "0001_dogs"
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version}.sql"


def files(directory: Traversable | None = None) -> list[Migration]:
    """The migrations in `directory` (default: this package), in the order they apply."""
    directory = directory or importlib.resources.files(__name__)
    migrations: dict[str, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r} is misnamed: use NNNN_description.sql "
                "(four digits, then lowercase letters, digits and '_')"
            )
        number = match["number"]
        if number in migrations:
            raise MigrationError(
                f"migration files {migrations[number].file_name!r} and {entry.name!r} share the number {number}"
            )
        migrations[number] = Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
    return [migrations[number] for number in sorted(migrations)]


def fingerprint(migrations: Sequence[Migration] | None = None) -> str:
    """A hash of the migrations' names and contents."""
    digest = hashlib.sha256()
    for migration in files() if migrations is None else migrations:
        digest.update(f"{migration.version}\0{migration.sql}\0".encode())
    return digest.hexdigest()


def apply(conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply the pending `migrations` (default: `files()`) on `conn`; returns the versions applied now."""
    import psycopg  # here, not at import time: reading the files needs no driver

    pending = files() if migrations is None else list(migrations)
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(_CREATE_TABLE)
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in pending:
            if migration.version in done:
                continue
            try:
                # Bytes, without parameters: psycopg sends the file as one simple query, so a file
                # may hold several statements.
                conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise MigrationError(f"migration {migration.file_name} failed: {str(exc).strip()}") from exc
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,))
            applied.append(migration.version)
    return applied
