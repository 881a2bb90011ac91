"""A database per test: the template, its clones, and what happens when things go wrong."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from testinfra import MigrationError
from testinfra import Migrations
from testinfra import StateError
from testinfra import StateTimeoutError
from testinfra._child import child_env
from testinfra._owner import Owner
from testinfra._postgres import KEPT_COMMENT
from testinfra._postgres import ClonePool
from testinfra._postgres import Server
from testinfra._postgres import drop_database
from testinfra._postgres import ensure_template
from testinfra._postgres import name_owner
from testinfra._postgres import sweep
from testinfra.conftest import BACKENDS
from testinfra.conftest import report
from testinfra.conftest import run_resources

ME = Owner.me()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


def databases(pg: Server, pattern: str = "^t[bct]_") -> set[str]:
    with pg.connect(autocommit=True) as conn:
        return {
            row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname ~ %s", (pattern,))
        }


def write_migrations(directory: Path, files: dict[str, str]) -> Migrations:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return Migrations(directory=directory)


def test_the_template_is_built_once_and_again_only_when_a_migration_changes(
    pg: Server, tmp_path: Path
) -> None:
    migrations = write_migrations(
        tmp_path / "m", {"0001_dogs.sql": "CREATE TABLE dogs (id serial PRIMARY KEY, name text NOT NULL);"}
    )
    first = ensure_template(pg, migrations, ME, 30)
    again = ensure_template(pg, migrations, ME, 30)
    assert first.built and not again.built
    assert again.name == first.name
    (tmp_path / "m" / "0002_age.sql").write_text("ALTER TABLE dogs ADD COLUMN age integer;")
    changed = ensure_template(pg, migrations, ME, 30)
    assert changed.built and changed.name != first.name
    pool = ClonePool(pg, changed.name, ahead=0, limit=1)
    try:
        name = pool.take(30)
        with pg.connect(name) as conn:
            columns = {
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'dogs'"
                )
            }
        assert columns == {"id", "name", "age"}
        pool.give_back(name)
    finally:
        pool.close()


def test_processes_that_need_a_template_at_once_build_it_once(pg: Server) -> None:
    builds: list[str] = []

    def migrate(conn: psycopg.Connection[Any]) -> None:
        builds.append("x")
        conn.execute("SELECT pg_sleep(0.3)")  # long enough for everyone to find it missing
        conn.execute("CREATE TABLE t (id int)")

    migrations = Migrations(apply=migrate, key=uuid.uuid4().hex)
    barrier = threading.Barrier(5)
    results: list[Any] = []

    def build() -> None:
        barrier.wait()
        # Each thread its own sessions, as separate processes would have.
        results.append(ensure_template(pg, migrations, ME, 60))

    threads = [threading.Thread(target=build) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 5
    assert len(builds) == 1
    assert [result.built for result in results].count(True) == 1
    assert len({result.name for result in results}) == 1


def test_a_failing_migration_names_the_file_and_line_and_leaves_nothing(
    pg: Server, tmp_path: Path, backend: str
) -> None:
    migrations = write_migrations(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE dogs (id serial PRIMARY KEY);",
            "0002_bad.sql": "-- a typo on line 3\nALTER TABLE dogs\n  ADD COLUMN age integr;\n",
        },
    )
    before = databases(pg)
    with pytest.raises(MigrationError) as failure:
        ensure_template(pg, migrations, ME, 30)
    message = str(failure.value)
    assert "0002_bad.sql" in message
    assert "line 3" in message
    assert 'type "integr" does not exist' in message
    assert databases(pg) == before, "a half-built template was left behind"
    with pg.connect(autocommit=True) as conn:
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'tb\\_%'"
        ).fetchone()
    assert sessions == (0,)
    report("migration fails (file, line, error)", backend)


def test_each_test_gets_a_fresh_clone_and_nothing_stays(pg: Server, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001.sql": "CREATE TABLE seen (who text);"})
    template = ensure_template(pg, migrations, ME, 30)
    pool = ClonePool(pg, template.name, ahead=2, limit=4)
    names = []
    try:
        for n in range(6):
            name = pool.take(30)
            names.append(name)
            with pg.connect(name, autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM seen").fetchone() == (0,)
                conn.execute("INSERT INTO seen VALUES (%s)", (str(n),))
            pool.give_back(name)
    finally:
        pool.close()
    assert len(set(names)) == 6
    assert all(name_owner(name) == ME for name in names)
    assert not {name for name in databases(pg) if name_owner(name) == ME}


CLONER = """
import json, sys
from testinfra._postgres import ClonePool, Server
server = Server(**json.loads(sys.argv[1]))
pool = ClonePool(server, sys.argv[2], ahead=int(sys.argv[3]), limit=50)
taken = []
for _ in range(int(sys.argv[4])):
    name = pool.take(60)
    with server.connect(name, autocommit=True) as conn:
        empty = conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 0
        conn.execute("INSERT INTO seen VALUES ('x')")
    taken.append([name, empty])
    print(json.dumps([name, empty]), flush=True)
if sys.argv[5] == "hold":
    sys.stdin.read()  # until killed
pool.close()
"""


def server_json(pg: Server) -> str:
    return json.dumps({field: getattr(pg, field) for field in Server.__dataclass_fields__})


def test_no_two_processes_ever_get_the_same_database(pg: Server, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001.sql": "CREATE TABLE seen (who text);"})
    template = ensure_template(pg, migrations, ME, 30)
    argv = [sys.executable, "-c", CLONER, server_json(pg), template.name, "2", "5", "close"]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, env=child_env()) for _ in range(3)]
    taken = []
    for child in children:
        output, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        taken += [json.loads(line) for line in output.decode().splitlines()]
    assert len(taken) == 15
    assert len({name for name, _ in taken}) == 15
    assert all(empty for _, empty in taken), "a process got a database another had written to"


def test_a_process_killed_mid_clone_leaves_no_database(pg: Server, tmp_path: Path, backend: str) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001.sql": "CREATE TABLE seen (who text);"})
    template = ensure_template(pg, migrations, ME, 30)
    # Takes one, holds it, and keeps eight more coming: clones are being made when it dies.
    argv = [sys.executable, "-c", CLONER, server_json(pg), template.name, "8", "1", "hold"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=child_env()) as child:
        assert child.stdout is not None
        (name, _) = json.loads(child.stdout.readline())
        owner = name_owner(name)
        assert owner is not None and owner.pid == child.pid
        deadline = time.monotonic() + 60
        while len({n for n in databases(pg) if name_owner(n) == owner}) < 3:
            assert time.monotonic() < deadline, "the child made no clones ahead"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        t0 = time.monotonic()
        dropped = sweep(pg, ME)
        seconds = time.monotonic() - t0
    assert name in dropped
    assert not {n for n in databases(pg) if name_owner(n) == owner}
    with pg.connect(autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (f"testinfra:{owner}",)
        ).fetchone()
    assert left == (0,), "a session of the dead process still runs (a clone could still land)"
    report("SIGKILL mid-clone", backend, seconds)


def test_a_full_pool_makes_takers_wait_with_a_deadline(pg: Server, tmp_path: Path, backend: str) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001.sql": "CREATE TABLE seen (who text);"})
    pool = ClonePool(pg, ensure_template(pg, migrations, ME, 30).name, ahead=0, limit=2)
    try:
        held = [pool.take(30), pool.take(30)]
        t0 = time.monotonic()
        with pytest.raises(StateTimeoutError, match=r"holds 2 of at most 2"):
            pool.take(0.5)
        assert 0.5 <= time.monotonic() - t0 < 10
        # A test that gives one back lets a waiting one through.
        got: list[str] = []
        waiter = threading.Thread(target=lambda: got.append(pool.take(60)))
        waiter.start()
        pool.give_back(held.pop())
        waiter.join(60)
        assert got and got[0] not in held
        for name in held + got:
            pool.give_back(name)
    finally:
        pool.close()
    report("pool exhausted: waits, then clear error", backend)


def test_a_failure_to_make_a_clone_fails_the_waiting_test_and_the_next_one_tries_again(pg: Server) -> None:
    # A template that does not exist yet: as a passing error ("too many clients") would, it fails
    # the test that waits now, not every test after it.
    template = f"tt_later_{uuid.uuid4().hex[:8]}"
    pool = ClonePool(pg, template, ahead=0, limit=1)
    try:
        with pytest.raises(StateError, match="could not make a database.*does not exist"):
            pool.take(30)
        with pg.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{template}"'.encode())
        name = pool.take(30)
        pool.give_back(name)
    finally:
        pool.close()
        with pg.connect(autocommit=True) as conn:
            drop_database(conn, template)


def test_a_kept_database_survives_every_sweep(pg: Server, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001.sql": "CREATE TABLE seen (who text);"})
    template = ensure_template(pg, migrations, ME, 30)
    # A process that has died since (same pid, another start time).
    dead = Owner(ME.pid, ME.start + 1, ME.pidns, ME.boot)
    assert not dead.alive
    pool = ClonePool(pg, template.name, ahead=0, limit=2, owner=dead)
    kept, left = pool.take(30), pool.take(30)
    pool.give_back(kept, keep=True)
    pool.close()
    try:
        sweep(pg, ME)
        assert kept in databases(pg)
        assert left not in databases(pg)
        with pg.connect(autocommit=True) as conn:
            comment = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (kept,)
            ).fetchone()
        assert comment == (KEPT_COMMENT,)
    finally:
        with pg.connect(autocommit=True) as conn:
            drop_database(conn, kept)


# The server dies while a test uses its database: that test fails with the server's logs, the next
# one with a clear error, and nothing is left.
SERVER_DIES = """
import psycopg
import pytest
from specs import POSTGRES
from testinfra import database_fixture
from testinfra import service_fixture

postgres = service_fixture(POSTGRES, scope="session")
db = database_fixture("postgres")

def test_1_the_server_dies(postgres, db, testinfra_manager):
    open("run", "w").write(testinfra_manager.run_id)
    with db.connect(autocommit=True) as conn:
        conn.execute("SELECT 1")
        postgres.kill()
        conn.execute("SELECT 1")

def test_2_the_next_test(db):
    pass
"""


def test_a_server_that_dies_mid_test_fails_that_test_with_its_logs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str, pytestconfig: pytest.Config
) -> None:
    from testinfra.conftest import write_state_specs

    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.setenv("TESTINFRA_BACKEND", backend)
    monkeypatch.delenv("TESTINFRA_REQUIRE_DOCKER", raising=False)
    write_state_specs(pytester.path / "specs.py", pytestconfig, backend)
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    pytester.makepyfile(test_dies=SERVER_DIES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "test_dies.py")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ServiceGoneError: service 'postgres': it exited*", "*exit code: *"])
    result.stdout.fnmatch_lines([f"*testinfra: postgres ({backend}, exited with code *"])
    assert run_resources((pytester.path / "run").read_text()) == []
    report("server dies mid-test", backend)


def test_migrations_refuse_a_callable_without_a_key_and_an_ambiguous_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs key="):
        Migrations(apply=lambda conn: None)
    with pytest.raises(ValueError, match="either directory="):
        Migrations(directory=tmp_path, apply=lambda conn: None, key="k")
    with pytest.raises(MigrationError, match="does not exist"):
        Migrations(directory=tmp_path / "missing").fingerprint()


KEPT_ON_FAILURE = """
import json
from specs import POSTGRES
from testinfra import database_fixture
from testinfra import service_fixture

postgres = service_fixture(POSTGRES, scope=SCOPE)
db = database_fixture("postgres")

def test_fails(db, testinfra_manager):
    with open("info.json", "w") as info:
        json.dump({"run": testinfra_manager.run_id, "dsn": db.dsn, "name": db.name}, info)
    with db.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE evidence (what text)")
    assert False, "look at the database"
"""


@pytest.mark.parametrize("scope", ["session", "shared"])
def test_a_failed_tests_database_is_kept_with_its_server_when_asked(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    pytestconfig: pytest.Config,
    scope: str,
) -> None:
    from testinfra.conftest import write_state_specs

    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.setenv("TESTINFRA_BACKEND", backend)
    monkeypatch.delenv("TESTINFRA_REQUIRE_DOCKER", raising=False)
    write_state_specs(pytester.path / "specs.py", pytestconfig, backend)
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    pytester.makepyfile(test_kept=KEPT_ON_FAILURE.replace("SCOPE", repr(scope)))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--testinfra-keep-on-failure", "test_kept.py"
    )
    result.assert_outcomes(failed=1)
    info = json.loads((pytester.path / "info.json").read_text())
    result.stdout.fnmatch_lines([f"*testinfra: database {info['name']}*", "psql 'host=*(kept)"])
    try:
        with psycopg.connect(info["dsn"]) as conn:
            assert conn.execute("SELECT count(*) FROM evidence").fetchone() == (0,)
            comment = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (info["name"],),
            ).fetchone()
        assert comment == (KEPT_COMMENT,)
    finally:
        subprocess.run(
            [sys.executable, "-m", "testinfra", "reap", "--kept", "--run", info["run"]],
            env=child_env(),
            check=True,
            capture_output=True,
        )
    assert run_resources(info["run"]) == []
