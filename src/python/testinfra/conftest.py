"""Fixtures for testinfra's own tests: inner pytest sessions that use Labrador's services."""

from __future__ import annotations

import json

import docker  # noqa: F401
import pytest

from testinfra._backends import open_all
from testinfra._backends.base import Resource
from testinfra._child import child_env
from testinfra._pants import resolve_image
from testinfra._reaper import list_resources
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
