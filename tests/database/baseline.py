"""What the database stage is compared with (bench/databases.py), selected by DATABASE_STAGE_BASELINE:

- `container`: a fresh PostgreSQL container (or process) per test, started when the test asks for
  it, migrated, removed after: isolated, and slow.
- `shared`: the naive way, one database for every test of the run (the server's own database,
  migrated once): fast, and wrong as soon as a test expects to be alone in it.

The fixtures keep the names and handles of the database stage's own (`db`, `other_db`,
`web_server1`), so the same tests run unchanged.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from labrador.web_server1 import migrations
from testinfra import Database
from testinfra._isolation import postgres_server
from tests.services.postgres import DB
from tests.services.postgres import POSTGRES
from tests.services.web_server1 import WEB_SERVER1

MODE = os.environ.get("DATABASE_STAGE_BASELINE", "")
MODES = ("container", "shared")


def _migrated(service) -> Database:
    database = Database(DB, postgres_server(service))
    with database.connect() as conn:
        migrations.apply(conn)
        conn.commit()
    return database


def _fresh(manager):
    service = manager.start(POSTGRES)
    try:
        database = _migrated(service)
        yield database
        database.close_connections()
    finally:
        manager.release(service)


def _shared(service):
    database = _migrated(service)
    yield database
    database.close_connections()


if MODE == "container":

    @pytest.fixture
    def db(testinfra_manager):
        yield from _fresh(testinfra_manager)

    @pytest.fixture
    def other_db(testinfra_manager):
        yield from _fresh(testinfra_manager)

elif MODE == "shared":

    @pytest.fixture
    def db(postgres):
        yield from _shared(postgres)

    @pytest.fixture
    def other_db(postgres):
        yield from _shared(postgres)

elif MODE:
    raise pytest.UsageError(f"DATABASE_STAGE_BASELINE={MODE!r} is not one of {', '.join(MODES)}")


@pytest.fixture
def web_server1(testinfra_manager, db):
    service = testinfra_manager.start(replace(WEB_SERVER1, env={"WEB_SERVER1_DATABASE_URL": db.peer_url}))
    yield service
    testinfra_manager.release(service)
