"""Fixtures for testinfra's own tests: inner pytest sessions that use Labrador's services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker  # noqa: F401
import pytest

from testinfra import Manager
from testinfra import PostgresCheck
from testinfra import Service
from testinfra import ServiceSpec
from testinfra import TcpCheck
from testinfra._backends import open_all
from testinfra._backends.base import Resource
from testinfra._child import child_env
from testinfra._isolation import postgres_server
from testinfra._isolation import redis_server
from testinfra._pants import resolve_image
from testinfra._postgres import Server
from testinfra._reaper import list_resources
from testinfra._redis import RedisServer
from testinfra._settings import BackendName
from testinfra._settings import Settings
from testinfra._statedir import StateDir

pytest_plugins = ["testinfra.plugin", "pytester"]
# (docker is imported above on purpose: pytester drops modules first imported during a test,
# and a second copy of the Docker SDK breaks the first one's sessions.)

ADDRESSES = {
    "web_server1": "src/python/labrador/web_server1:image",
    "web_server2": "src/python/labrador/web_server2:image",
}
BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.testinfra_docker)]

# The specs every inner session uses; images.json beside it names the images of this backend.
SPECS = """
import json
import pathlib

from testinfra import ServiceSpec

IMAGES = json.loads((pathlib.Path(__file__).parent / "images.json").read_text())

WS1 = ServiceSpec(
    name="web_server1",
    image=IMAGES["web_server1"],
    command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"),
)
WS2 = ServiceSpec(
    name="web_server2",
    image=IMAGES["web_server2"],
    command=("{python}", "-m", "labrador.web_server2.main", "--fd", "{fd}"),
    depends_on=(WS1,),
    env={"WEB_SERVER2_UPSTREAM_URL": "{web_server1.url}"},
)
"""


def run_resources(run: str) -> list[Resource]:
    """Every resource of `run`, on every backend that answers here."""
    settings = Settings.from_env()
    backends, _ = open_all(settings, StateDir(settings.state_dir))
    try:
        return list_resources(backends, run)
    finally:
        for backend in backends:
            backend.close()


def report(scenario: str, backend: str, seconds: float | None = None) -> None:
    """A row of the fault table (README), printed after the test checked that nothing is left:
    `pytest -s ... | grep FAULT`."""
    clean = f" clean={seconds:.2f}s" if seconds is not None else ""
    print(f"FAULT {scenario:<40} {backend:<8} leftovers=0{clean}")


def image_or_address(address: str, config: pytest.Config, backend: str) -> str:
    # Resolved here, from where pytest was started (Pants puts docker-info.json there),
    # because the inner sessions run in a temporary directory.
    if backend != "docker":
        return address
    return resolve_image(address, [config.invocation_params.dir, config.rootpath])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> BackendName:
    param: BackendName = request.param
    return param


@pytest.fixture
def web_server1_image(backend: str, pytestconfig: pytest.Config) -> str:
    return image_or_address(ADDRESSES["web_server1"], pytestconfig, backend)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str) -> pytest.Pytester:
    """A pytester directory whose sessions use testinfra on `backend`, with Labrador's two services."""
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.setenv("TESTINFRA_BACKEND", backend)
    if backend == "process":
        # CI requires Docker for the outer session; these inner sessions choose processes on purpose.
        monkeypatch.delenv("TESTINFRA_REQUIRE_DOCKER", raising=False)
    config = pytester._request.config
    images = {name: image_or_address(address, config, backend) for name, address in ADDRESSES.items()}
    (pytester.path / "images.json").write_text(json.dumps(images))
    pytester.makepyfile(specs=SPECS)
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    return pytester


# PostgreSQL and Redis for the tests of per-test state (their target depends on these images).
STATE_ADDRESSES = {"postgres": "docker/postgres:image", "redis": "docker/redis:image"}
PG_USER = PG_PASSWORD = PG_DB = "state"
PG_COMMAND = (
    "{python}", "-m", "testinfra._pglocal", "--host", "{host}", "--port", "{port}",
    "--data-dir", "{workdir}/data", "--user", PG_USER, "--password", PG_PASSWORD, "--db", PG_DB,
)  # fmt: skip


def postgres_spec(image: str) -> ServiceSpec:
    return ServiceSpec(
        name="postgres",
        image=image,
        command=PG_COMMAND,
        port=5432,
        tmpfs=("/var/lib/postgresql/data",),
        env={"POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": PG_DB},
        ready=PostgresCheck(user=PG_USER, password=PG_PASSWORD, dbname=PG_DB),
        start_timeout=60.0,
    )


def redis_spec(image: str, databases: int = 16) -> ServiceSpec:
    return ServiceSpec(
        name="redis",
        image=image,
        command=(
            "redis-server",
            "--bind",
            "{host}",
            "--port",
            "{port}",
            "--save",
            "",
            "--databases",
            str(databases),
        ),
        args=("--databases", str(databases)),
        port=6379,
        ready=TcpCheck(send=b"PING\r\n", expect=b"+PONG\r\n"),
    )


@pytest.fixture(scope="module")
def state_manager(backend: BackendName) -> Iterator[Manager]:
    """A manager of this module's servers (per backend)."""
    manager = Manager(Settings(backend=backend))
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture(scope="module")
def postgres(state_manager: Manager, backend: str, pytestconfig: pytest.Config) -> Service:
    return state_manager.start(
        postgres_spec(image_or_address(STATE_ADDRESSES["postgres"], pytestconfig, backend))
    )


@pytest.fixture(scope="module")
def pg(postgres: Service) -> Server:
    """How to reach and log in to the module's PostgreSQL."""
    return postgres_server(postgres)


def start_redis(manager: Manager, backend: str, config: pytest.Config, databases: int = 16) -> RedisServer:
    image = image_or_address(STATE_ADDRESSES["redis"], config, backend)
    return redis_server(manager.start(redis_spec(image, databases)))


def write_state_specs(path: Path, config: pytest.Config, backend: str) -> None:
    """specs.py for inner sessions: POSTGRES and REDIS, on this backend's images."""
    images = {name: image_or_address(address, config, backend) for name, address in STATE_ADDRESSES.items()}
    path.write_text(
        "from testinfra.conftest import postgres_spec, redis_spec\n"
        f"POSTGRES = postgres_spec({images['postgres']!r})\n"
        f"REDIS = redis_spec({images['redis']!r})\n"
    )
