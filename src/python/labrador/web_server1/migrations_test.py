"""The migrator: file discovery and order, bookkeeping and errors (with a fake connection), then
against a real PostgreSQL: once only, one at a time, all or nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from labrador.web_server1 import migrations
from labrador.web_server1.migrations import Migration
from labrador.web_server1.migrations import MigrationError


def write(directory: Path, **files: str) -> Path:
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def test_the_package_ships_its_migrations_first_one_creates_dogs() -> None:
    found = migrations.files()
    assert found[0].version == "0001_dogs"
    assert "CREATE TABLE dogs" in found[0].sql


def test_files_are_ordered_by_number_and_other_files_ignored(tmp_path: Path) -> None:
    write(tmp_path, **{"0010_c.sql": "c", "0002_b.sql": "b", "0001_a.sql": "a", "README.md": "x"})
    assert [m.version for m in migrations.files(tmp_path)] == ["0001_a", "0002_b", "0010_c"]


@pytest.mark.parametrize("name", ["1_dogs.sql", "0001-dogs.sql", "0001_Dogs.sql", "dogs.sql"])
def test_a_misnamed_file_is_an_error_that_names_it(tmp_path: Path, name: str) -> None:
    write(tmp_path, **{name: "SELECT 1"})
    with pytest.raises(MigrationError, match=f"'{name}' is misnamed: use NNNN_description.sql"):
        migrations.files(tmp_path)


def test_two_files_with_one_number_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, **{"0001_a.sql": "a", "0001_b.sql": "b"})
    with pytest.raises(MigrationError, match="share the number 0001"):
        migrations.files(tmp_path)


def test_the_fingerprint_changes_with_any_file() -> None:
    base = [Migration("0001_a", "CREATE TABLE a ()")]
    assert migrations.fingerprint(base) == migrations.fingerprint(list(base))
    assert migrations.fingerprint(base) != migrations.fingerprint([Migration("0001_a", "CREATE TABLE b ()")])
    assert migrations.fingerprint(base) != migrations.fingerprint([Migration("0001_b", "CREATE TABLE a ()")])


class FakeConnection:
    """Records what `apply` sends; `applied` plays the schema_migrations table."""

    def __init__(self, applied: set[str], fail_on: str | None = None) -> None:
        self.applied = set(applied)
        self.fail_on = fail_on
        self.sent: list[str] = []
        self.in_transaction = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.in_transaction = True
        yield
        self.in_transaction = False

    def execute(self, query: str | bytes, params: tuple[Any, ...] | None = None) -> list[tuple[str]]:
        assert self.in_transaction, "everything happens in one transaction"
        text = query.decode() if isinstance(query, bytes) else query
        self.sent.append(text.strip())
        if text == self.fail_on:
            raise psycopg.errors.SyntaxError('syntax error at or near "SELEC"')
        if text.startswith("SELECT version FROM schema_migrations"):
            return [(version,) for version in sorted(self.applied)]
        if text.startswith("INSERT INTO schema_migrations"):
            assert params is not None
            self.applied.add(params[0])
        return []


MIGRATIONS = [Migration("0001_a", "CREATE TABLE a ()"), Migration("0002_b", "CREATE TABLE b ()")]


def test_takes_the_lock_first_then_applies_pending_files_in_order_and_records_each() -> None:
    conn = FakeConnection(applied=set())
    assert migrations.apply(conn, MIGRATIONS) == ["0001_a", "0002_b"]  # type: ignore[arg-type]
    assert conn.sent[0] == "SELECT pg_advisory_xact_lock(%s)"
    files_sent = [q for q in conn.sent if q in ("CREATE TABLE a ()", "CREATE TABLE b ()")]
    assert files_sent == ["CREATE TABLE a ()", "CREATE TABLE b ()"]
    assert conn.applied == {"0001_a", "0002_b"}


def test_skips_what_is_recorded_already() -> None:
    conn = FakeConnection(applied={"0001_a"})
    assert migrations.apply(conn, MIGRATIONS) == ["0002_b"]  # type: ignore[arg-type]
    assert "CREATE TABLE a ()" not in conn.sent
    assert migrations.apply(conn, MIGRATIONS) == []  # type: ignore[arg-type]


def test_a_failing_file_is_named_with_the_sql_error_and_stops_the_run() -> None:
    conn = FakeConnection(applied=set(), fail_on="CREATE TABLE a ()")
    with pytest.raises(
        MigrationError, match=r'^migration 0001_a.sql failed: syntax error at or near "SELEC"$'
    ):
        migrations.apply(conn, MIGRATIONS)  # type: ignore[arg-type]
    assert "CREATE TABLE b ()" not in conn.sent
    assert conn.applied == set()


# Against a real server.


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def recorded(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_applies_each_file_once(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert migrations.apply(conn) == [m.version for m in migrations.files()]
        assert migrations.apply(conn) == []
    assert {"dogs", "schema_migrations"} <= tables(database_url)
    assert recorded(database_url) == [m.version for m in migrations.files()]


def test_a_failing_file_rolls_back_the_whole_run(database_url: str) -> None:
    broken = [
        Migration("0001_a", "CREATE TABLE a (x int)"),
        Migration("0002_b", "CREATE TABLE b (x nosuchtype)"),
    ]
    with psycopg.connect(database_url) as conn:
        with pytest.raises(
            MigrationError, match='^migration 0002_b.sql failed: type "nosuchtype" does not exist'
        ):
            migrations.apply(conn, broken)
    assert tables(database_url) == set()


def test_waits_for_the_lock_another_migrator_holds(database_url: str) -> None:
    done = threading.Event()
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                migrations.apply(conn)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            done.set()

    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (migrations.LOCK_KEY,))
        worker = threading.Thread(target=migrate)
        worker.start()
        # Wait (bounded) until the server shows the migrator blocked on our advisory lock.
        deadline = time.monotonic() + 30
        while not holder.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid <> pg_backend_pid()"
        ).fetchone():
            assert not done.is_set(), f"the migrator did not wait for the lock: {errors}"
            assert time.monotonic() < deadline, "the migrator never asked for the lock"
            time.sleep(0.01)
        assert tables(database_url) == set()
        holder.commit()  # releases the lock
    worker.join(30)
    assert done.is_set() and not errors
    assert "dogs" in tables(database_url)


def test_instances_starting_together_apply_each_file_once(database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def migrate() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait(30)
                results.append(migrations.apply(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    versions = [m.version for m in migrations.files()]
    assert sorted(results, key=len) == [[], [], [], versions]
    assert recorded(database_url) == versions
