"""Real PostgreSQL and Redis servers for the services' unit tests, from the host's packages.

Each listens on a Unix socket in its own temporary directory (no TCP port, so nothing to collide
with), and dies with the test process. Where the server is not installed the tests that need it
are skipped, except in CI (CI=true), which installs both (.ci/run): there they fail.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
import redis

import testinfra._pglocal as pglocal

_START_TIMEOUT = 60.0
_POLL = 0.02
# Names the socket file only: the servers listen on no TCP port.
_PG_PORT = 5432


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; CI must install it (.ci/run)")
    pytest.skip(f"{what} is not installed")


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"the server was not ready in {_START_TIMEOUT}s:\n{log.read_text(errors='replace')}")
        time.sleep(_POLL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={_PG_PORT}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        pglocal.find_binaries()
    except pglocal.LaunchError:
        _missing("PostgreSQL (initdb, postgres)")
    # Directly under /tmp: as root the server runs as the postgres user, which cannot enter
    # pytest's temporary directories (0700, root's).
    work = Path(tempfile.mkdtemp(prefix="labrador-pg-", dir="/tmp"))
    data_dir, log = work / "data", work / "server.log"
    os.chmod(work, 0o755)
    assert pglocal.__file__ is not None
    argv = [
        sys.executable,
        pglocal.__file__,
        "--port",
        str(_PG_PORT),
        "--host",
        "",
        "--data-dir",
        str(data_dir),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    server = PostgresServer(data_dir)

    def ready() -> bool:
        try:
            with psycopg.connect(server.url(), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    try:
        _wait_until(ready, proc, log)
        yield server
    finally:
        _stop(proc)
        pglocal.release_leftovers(data_dir)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        _missing("redis-server")
    work = Path(tempfile.mkdtemp(prefix="labrador-redis-"))
    socket_path, log = work / "redis.sock", work / "server.log"
    argv = [server, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(work)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    url = f"unix://{socket_path}"

    def ready() -> bool:
        client = redis.Redis.from_url(url)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    try:
        _wait_until(ready, proc, log)
        yield url
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's TestClient now prefers the httpx2 package; httpx, which the services use, still works.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")
