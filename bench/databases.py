"""Isolated PostgreSQL state per test: what each way of getting it costs.

Run from the repo root after `./pants package docker/postgres:image docker/redis:image
src/python/labrador/web_server1:image src/python/labrador/web_server2:image` (the images), on a
quiet machine (`flock /work/.bench.lock ...` where machines are shared):

    PYTHONPATH=src/python:. python bench/databases.py [--backend docker] [--only handout,template,app,suite]

Sections (all on one PostgreSQL server from tests/services/postgres.py, migrated with
web_server1's migrations):
- handout: the time a test waits for an isolated, migrated database: a clone from the pool made
  ahead, a clone made on demand, TRUNCATE of every table of one database, a fresh server per test
  (started on demand, and from testinfra's warm pool). Between takes, a test body (connect, write,
  read) runs, as in a suite.
- template: built once per server and migration set; a second process reuses it; a changed
  migration file makes a new one.
- app: ways to point web_server1 at each test's own database (see the README's table).
- suite: tests/database under `pytest -n auto` and `./pants test`, with a database per test and
  with a fresh container per test (DATABASE_STAGE_BASELINE=container); and once with one shared
  database (DATABASE_STAGE_BASELINE=shared), counting the tests that break.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._common import median
from bench._common import p90
from bench._common import save
from bench._common import table
from labrador.web_server1 import migrations
from testinfra import Manager
from testinfra import Migrations
from testinfra import Settings
from testinfra._isolation import postgres_server
from testinfra._owner import Owner
from testinfra._pool import Pool
from testinfra._postgres import ClonePool
from testinfra._postgres import Database
from testinfra._postgres import Server
from testinfra._postgres import drop_database
from testinfra._postgres import ensure_template
from testinfra._postgres import sweep
from tests.services.postgres import DB
from tests.services.postgres import POSTGRES
from tests.services.web_server1 import WEB_SERVER1

DOGS = Migrations(apply=migrations.apply, key=migrations.fingerprint())
ME = Owner.me()
SECTIONS = ("handout", "template", "app", "suite")


def test_body(url: str) -> None:
    """What a short test does with its database: connect, write, read."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dogs (name, breed, age) VALUES ('Rex', 'labrador', 3)")
        assert conn.execute("SELECT count(*) FROM dogs").fetchone() == (1,)


def ms(values: list[float]) -> list[str]:
    return [f"{median(values) * 1000:.1f}", f"{p90(values) * 1000:.1f}"]


def truncate_all(url: str) -> None:
    """Empty every table but the migrations' record, identities restarted: the common reset."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def migrated(server: Server) -> Database:
    database = Database(DB, server)
    with database.connect() as conn:
        migrations.apply(conn)
        conn.commit()
    return database


def handout(manager: Manager, server: Server, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    template = ensure_template(server, DOGS, ME, 60).name
    for label, ahead in (
        ("clone from the pool made ahead (2 ahead)", 2),
        ("clone made on demand (CREATE DATABASE)", 0),
    ):
        pool = ClonePool(server, template, ahead=ahead, limit=4)
        waits = []
        try:
            for _ in range(runs):
                t0 = time.perf_counter()
                name = pool.take(60)
                waits.append(time.perf_counter() - t0)
                test_body(Database(name, server).url)
                pool.give_back(name)
        finally:
            pool.close()
        samples[label] = waits
    pool = ClonePool(server, template, ahead=0, limit=1)
    name = pool.take(60)
    url = Database(name, server).url
    waits = []
    for _ in range(runs):
        t0 = time.perf_counter()
        truncate_all(url)
        waits.append(time.perf_counter() - t0)
        test_body(url)
    pool.give_back(name)
    pool.close()
    samples["TRUNCATE every table of one database"] = waits
    few = max(3, runs // 5)
    waits, removals = [], []
    for _ in range(few):
        t0 = time.perf_counter()
        service = manager.start(POSTGRES)
        database = migrated(postgres_server(service))
        waits.append(time.perf_counter() - t0)
        test_body(database.url)
        database.close_connections()
        t1 = time.perf_counter()
        manager.release(service)
        removals.append(time.perf_counter() - t1)
    samples["fresh PostgreSQL per test, started on demand"] = waits
    samples["(its removal after the test)"] = removals
    waits = []
    for _ in range(few):
        t0 = time.perf_counter()
        service = manager.take(POSTGRES)  # testinfra's warm pool of never-used servers
        database = migrated(postgres_server(service))
        waits.append(time.perf_counter() - t0)
        test_body(database.url)
        database.close_connections()
        manager.release(service)
    samples["fresh PostgreSQL per test, from the warm pool"] = waits
    return samples


TEMPLATE_CHILD = """
import json, sys
from pathlib import Path
from testinfra import Migrations
from testinfra._owner import Owner
from testinfra._postgres import Server, ensure_template
server = Server(**json.loads(sys.argv[1]))
t = ensure_template(server, Migrations(directory=Path(sys.argv[2])), Owner.me(), 60)
print(json.dumps([t.name, t.built, t.seconds]))
"""


def template(server: Server) -> list[list[str]]:
    """Who builds, who reuses: each step in a process of its own, as separate test runs would."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "migrations"
        shutil.copytree(Path(migrations.__file__).parent, directory)
        server_json = json.dumps({field: getattr(server, field) for field in Server.__dataclass_fields__})

        def step(what: str) -> None:
            out = subprocess.run(
                [sys.executable, "-c", TEMPLATE_CHILD, server_json, str(directory)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            name, built, seconds = json.loads(out)
            rows.append([what, name[:14] + "...", "built" if built else "reused", f"{seconds * 1000:.0f}"])

        step("first process")
        step("second process, same migrations")
        (directory / "0002_owners.sql").write_text(
            "CREATE TABLE owners (id bigint PRIMARY KEY, name text);\n"
        )
        step("a migration file added")
        (directory / "0002_owners.sql").write_text(
            "CREATE TABLE owners (id bigint PRIMARY KEY, name text, phone text);\n"
        )
        step("that file changed")
        step("again, unchanged")
    # Nothing handed out is ever a used database: a clone taken after a test wrote to its own is empty.
    tpl = ensure_template(server, DOGS, ME, 60).name
    pool = ClonePool(server, tpl, ahead=0, limit=2)
    first = pool.take(60)
    test_body(Database(first, server).url)
    pool.give_back(first)
    second = pool.take(60)
    with psycopg.connect(Database(second, server).url) as conn:
        empty = conn.execute("SELECT count(*) FROM dogs").fetchone() == (0,)
    pool.give_back(second)
    pool.close()
    rows.append(
        [
            "next clone after a test wrote to its own",
            second[:14] + "...",
            "empty" if empty else "NOT EMPTY",
            "",
        ]
    )
    return rows


def app(manager: Manager, server: Server, runs: int) -> dict[str, list[float]]:
    """Each way, per test: how long the test waits before its first answer from web_server1."""
    samples: dict[str, list[float]] = {}
    clones = ClonePool(server, ensure_template(server, DOGS, ME, 60).name, ahead=2, limit=8)

    def bound(database: Database) -> Any:
        return replace(WEB_SERVER1, env={"WEB_SERVER1_DATABASE_URL": database.peer_url})

    def first_answer(url: str) -> None:
        response = httpx.get(f"{url}/dogs", timeout=30)
        assert response.status_code == 200 and response.json() == [], response.text

    try:
        waits = []
        for _ in range(runs):
            t0 = time.perf_counter()
            database = Database(clones.take(60), server)
            service = manager.start(bound(database))
            first_answer(service.url)
            waits.append(time.perf_counter() - t0)
            manager.release(service)
            clones.give_back(database.name)
        samples["a web_server1 started per test, bound to its database"] = waits

        def start_pair() -> tuple[Database, Any]:
            database = Database(clones.take(60), server)
            return database, manager.start(bound(database))

        def discard(pair: tuple[Database, Any]) -> None:
            manager.release(pair[1])
            clones.give_back(pair[0].name)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as executor:
            pairs: Pool[tuple[Database, Any]] = Pool(start_pair, discard, executor, 2)
            pairs.expect(runs)
            waits = []
            for _ in range(runs):
                t0 = time.perf_counter()
                database, service = pairs.take()
                first_answer(service.url)
                waits.append(time.perf_counter() - t0)
                # A test of a few HTTP calls.
                for _ in range(10):
                    httpx.get(f"{service.url}/dogs")
                discard((database, service))
            pairs.close()
        samples["a pair (database, web_server1) from a warm pool of 2"] = waits

        # One web_server1 for the session, on a database whose name stays; per test a fresh clone
        # (made ahead, untimed) is renamed into that name, the old one dropped and its connections ended.
        slot = Database(clones.take(60), server)
        service = manager.start(bound(slot))
        waits = []
        with server.admin(ME) as conn:
            for i in range(runs):
                httpx.post(f"{service.url}/dogs", json={"name": "Rex", "age": 1})
                fresh = f"{slot.name}s{i}"
                conn.execute(f'CREATE DATABASE "{fresh}" TEMPLATE "{clones.template}" STRATEGY FILE_COPY')
                t0 = time.perf_counter()
                drop_database(conn, slot.name)
                conn.execute(f'ALTER DATABASE "{fresh}" RENAME TO "{slot.name}"')
                first_answer(service.url)
                waits.append(time.perf_counter() - t0)
        manager.release(service)
        clones.give_back(slot.name)
        samples["one web_server1, a fresh clone renamed under it per test"] = waits

        from fastapi.testclient import TestClient

        from labrador.web_server1.app import create_app
        from labrador.web_server1.settings import Settings as AppSettings

        waits = []
        for _ in range(runs):
            t0 = time.perf_counter()
            database = Database(clones.take(60), server)
            with TestClient(create_app(AppSettings(database_url=database.url))) as client:
                response = client.get("/dogs")
                assert response.status_code == 200 and response.json() == []
                waits.append(time.perf_counter() - t0)
            clones.give_back(database.name)
        samples["web_server1 in the test process (TestClient), bound to its database"] = waits
    finally:
        clones.close()
    return samples


def run_suite(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout + done.stderr


def outcome(output: str) -> str:
    found = re.findall(r"(\d+) (passed|failed|errors?)", output)
    return ", ".join(f"{count} {what}" for count, what in found) or output.strip().splitlines()[-1]


def suite(
    backend: str, runs: int, pants: bool, pytest: bool = True
) -> tuple[list[list[str]], dict[str, list[float]]]:
    base = {**os.environ, "PYTHONPATH": "src/python:.", "TESTINFRA_BACKEND": backend}
    base.pop("DATABASE_STAGE_BASELINE", None)
    pytest_command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "auto",
        "tests/database",
    ]
    modes = {
        "a database per test": {},
        "a fresh container per test": {"DATABASE_STAGE_BASELINE": "container"},
    }
    samples: dict[str, list[float]] = {f"pytest -n auto | {mode}": [] for mode in modes}
    outcomes: dict[str, str] = {}
    for _ in range(runs if pytest else 0):
        for mode, extra in modes.items():
            seconds, output = run_suite(pytest_command, {**base, **extra})
            samples[f"pytest -n auto | {mode}"].append(seconds)
            outcomes[f"pytest -n auto | {mode}"] = outcome(output)
    if pants:
        # Once unforced first: pantsd up, the images and PEXes built, so no row pays for them.
        run_suite(["./pants", "test", "tests/database:"], {**os.environ})
        for mode, extra in modes.items():
            key = f"./pants test | {mode}"
            flags = ["--test-force"]
            if extra:
                flags.append("--test-extra-env-vars=+['DATABASE_STAGE_BASELINE=container']")
            # (The container row takes minutes: once.)
            for _ in range(1 if extra else runs):
                seconds, output = run_suite(["./pants", *flags, "test", "tests/database:"], {**os.environ})
                samples.setdefault(key, []).append(seconds)
                outcomes[key] = (
                    "passed" if " failed in " not in output and "succeeded" in output else output[-2000:]
                )
    rows = []
    for mode in modes:
        for runner in ("pytest -n auto", "./pants test"):
            key = f"{runner} | {mode}"
            if samples.get(key):
                rows.append([runner, mode, f"{median(samples[key]):.1f}", outcomes[key]])
    if pytest:
        _, output = run_suite(pytest_command, {**base, "DATABASE_STAGE_BASELINE": "shared"})
        rows.append(["pytest -n auto", "one shared database (naive)", "", outcome(output)])
    return rows, samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("docker", "process"), default="docker")
    parser.add_argument("--runs", type=int, default=30, help="takes per row (fresh servers: a fifth of it)")
    parser.add_argument("--suite-runs", type=int, default=3)
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--no-pants", action="store_true", help="skip the ./pants test rows")
    parser.add_argument("--no-pytest", action="store_true", help="skip the pytest -n auto rows")
    args = parser.parse_args()
    only = args.only.split(",")
    results: dict[str, Any] = {"backend": args.backend}
    manager = Manager(Settings(backend=args.backend))
    try:
        service = manager.start(POSTGRES)
        server = postgres_server(service)
        sweep(server, ME)
        if "handout" in only:
            samples = handout(manager, server, args.runs)
            results["handout"] = samples
            print(f"\nA test's wait for an isolated, migrated database ({args.backend}; ms)")
            print(table(["way", "p50", "p90", "n"], [[k, *ms(v), str(len(v))] for k, v in samples.items()]))
        if "template" in only:
            rows = template(server)
            results["template"] = rows
            print("\nThe template: built once per server and migration set")
            print(table(["step", "template", "", "ms"], rows))
        if "app" in only:
            samples = app(manager, server, max(4, args.runs // 4))
            results["app"] = samples
            print(
                f"\nPointing web_server1 at each test's database: the test's wait for its first answer ({args.backend}; ms)"
            )
            print(table(["way", "p50", "p90", "n"], [[k, *ms(v), str(len(v))] for k, v in samples.items()]))
    finally:
        manager.close()
    if "suite" in only:
        rows, samples = suite(args.backend, args.suite_runs, not args.no_pants, not args.no_pytest)
        results["suite"] = samples
        print(
            f"\nThe database stage (tests/database), medians of {args.suite_runs} runs "
            "(./pants with a container per test: 1)"
        )
        print(table(["runner", "isolation", "seconds", "outcome"], rows))
    save("databases", results)


if __name__ == "__main__":
    main()
