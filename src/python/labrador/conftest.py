"""Real PostgreSQL and Redis for the services' unit tests: the host's servers as local processes
(testinfra's process backend), one of each per test process, and a database or a Redis index of
its own for each test.

Where a server is not installed the tests that need it are skipped, except in CI (CI=true),
which installs both (.ci/run): there they fail.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

import testinfra._pglocal as pglocal
from testinfra import Database
from testinfra import RedisDatabase
from testinfra import database_fixture
from testinfra import redis_fixture
from testinfra import service_fixture
from tests.services.postgres import POSTGRES
from tests.services.redis import REDIS

# testinfra is not installed as a distribution inside this repo, so load its plugin module here.
pytest_plugins = ["testinfra.plugin"]

# No image: the host's servers, even where an engine answers (no image to build for a unit test).
postgres = service_fixture(dataclasses.replace(POSTGRES, image=None), scope="session")
redis = service_fixture(dataclasses.replace(REDIS, image=None, args=None), scope="session")
empty_database = database_fixture("postgres")
own_redis = redis_fixture("redis")


def _require(found: bool, what: str) -> None:
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; CI must install it (.ci/run)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database for one test."""
    try:
        pglocal.find_binaries()
    except pglocal.LaunchError:
        _require(False, "PostgreSQL (initdb, postgres)")
    database: Database = request.getfixturevalue("empty_database")
    return database.url


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis database index nobody else uses during the test (emptied after it)."""
    _require(shutil.which("redis-server") is not None, "redis-server")
    database: RedisDatabase = request.getfixturevalue("own_redis")
    return database.url


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's TestClient now prefers the httpx2 package; httpx, which the services use, still works.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")
