"""The dog registry in PostgreSQL: used when WEB_SERVER1_DATABASE_URL is set.

`open_registry` runs at start: it connects once (a database that is down fails the start with a
clear error), applies the migrations, then opens the connection pool the requests use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool
from psycopg_pool import PoolTimeout

from labrador.web_server1 import migrations
from labrador.web_server1.models import Dog
from labrador.web_server1.models import DogIn
from labrador.web_server1.registry import DogNotFoundError
from labrador.web_server1.registry import RegistryFullError
from labrador.web_server1.registry import StoreUnavailableError
from labrador.web_server1.settings import Settings

_COLUMNS = "id, name, breed, age"


class DatabaseStartError(RuntimeError):
    """The database could not be reached or migrated when the service started."""


def describe(url: str) -> str:
    """The URL's user, host, port and database, without its password (for error messages)."""
    info = conninfo_to_dict(url)
    return f"{info.get('user', '?')}@{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '?')}"


class PostgresRegistry:
    def __init__(self, pool: ConnectionPool[psycopg.Connection[TupleRow]]) -> None:
        self._pool = pool

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection in a transaction, committed on exit; database trouble becomes a 503."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailableError(f"no database connection became free in time: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"the database is unavailable: {str(exc).strip()}") from exc

    def add(self, dog: DogIn, limit: int) -> Dog:
        with self._transaction() as conn:
            # Adds take turns (reads do not wait), so two adds cannot both take the last free place.
            conn.execute("LOCK TABLE dogs IN SHARE ROW EXCLUSIVE MODE")
            count = conn.execute("SELECT count(*) FROM dogs").fetchone()
            if count is not None and count[0] >= limit:
                raise RegistryFullError(limit)
            created = (
                conn.cursor(row_factory=class_row(Dog))
                .execute(
                    f"INSERT INTO dogs (name, breed, age) VALUES (%s, %s, %s) RETURNING {_COLUMNS}",
                    (dog.name, dog.breed, dog.age),
                )
                .fetchone()
            )
        assert created is not None  # INSERT ... RETURNING returns the row
        return created

    def get(self, dog_id: int) -> Dog:
        with self._transaction() as conn:
            dog = (
                conn.cursor(row_factory=class_row(Dog))
                .execute(f"SELECT {_COLUMNS} FROM dogs WHERE id = %s", (dog_id,))
                .fetchone()
            )
        if dog is None:
            raise DogNotFoundError(dog_id)
        return dog

    def list(self) -> list[Dog]:
        with self._transaction() as conn:
            return (
                conn.cursor(row_factory=class_row(Dog))
                .execute(f"SELECT {_COLUMNS} FROM dogs ORDER BY id")
                .fetchall()
            )

    def delete(self, dog_id: int) -> None:
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM dogs WHERE id = %s", (dog_id,)).rowcount
        if deleted == 0:
            raise DogNotFoundError(dog_id)

    def close(self) -> None:
        self._pool.close()


def open_registry(settings: Settings) -> PostgresRegistry:
    """Migrate the database at `settings.database_url` and open the pool; DatabaseStartError if either fails."""
    url = settings.database_url
    if url is None:
        raise ValueError("open_registry needs settings.database_url")
    connect_timeout = max(1, math.ceil(settings.database_timeout))  # libpq wants whole seconds
    try:
        with psycopg.connect(url, connect_timeout=connect_timeout) as conn:
            migrations.apply(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseStartError(
            f"web_server1 cannot reach its database {describe(url)}: {str(exc).strip()}"
        ) from exc
    except migrations.MigrationError as exc:
        raise DatabaseStartError(f"web_server1 cannot migrate its database {describe(url)}: {exc}") from exc
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=settings.database_pool_size,
        timeout=settings.database_timeout,
        kwargs={"connect_timeout": connect_timeout},
        # A connection broken by a database restart is replaced instead of failing a request.
        check=ConnectionPool.check_connection,
        name="web_server1",
        open=False,
    )
    try:
        pool.open(wait=True, timeout=settings.database_timeout)
    except PoolTimeout as exc:
        pool.close()
        raise DatabaseStartError(f"web_server1 could not open connections to {describe(url)}: {exc}") from exc
    return PostgresRegistry(pool)
