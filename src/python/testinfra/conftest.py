"""Fixtures for testinfra's own tests: inner pytest sessions that use Labrador's services."""

from __future__ import annotations

import os
import sys

import docker  # noqa: F401
import pytest

from testinfra._pants import resolve_image

pytest_plugins = ["testinfra.plugin", "pytester"]
# (docker is imported above on purpose: pytester drops modules first imported during a test,
# and a second copy of the Docker SDK breaks the first one's sessions.)

WEB_SERVER1 = "src/python/labrador/web_server1:image"
WEB_SERVER2 = "src/python/labrador/web_server2:image"
BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.testinfra_docker)]

SPECS = """
from testinfra import ServiceSpec

WS1 = ServiceSpec(
    name="web_server1",
    image={image1!r},
    command=("{{python}}", "-m", "labrador.web_server1.main", "--fd", "{{fd}}"),
)
WS2 = ServiceSpec(
    name="web_server2",
    image={image2!r},
    command=("{{python}}", "-m", "labrador.web_server2.main", "--fd", "{{fd}}"),
    depends_on=(WS1,),
    env={{"WEB_SERVER2_UPSTREAM_URL": "{{web_server1.url}}"}},
)
"""


def image_or_address(address: str, config: pytest.Config, backend: str) -> str:
    # Resolved here, from where pytest was started (Pants puts docker-info.json there),
    # because the inner sessions run in a temporary directory.
    return resolve_image(address, cwd=config.invocation_params.dir) if backend == "docker" else address


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def web_server1_image(backend: str, pytestconfig: pytest.Config) -> str:
    return image_or_address(WEB_SERVER1, pytestconfig, backend)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str) -> pytest.Pytester:
    """A pytester directory whose sessions use testinfra on `backend`, with Labrador's two services."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    monkeypatch.setenv("TESTINFRA_BACKEND", backend)
    if backend == "process":
        # CI requires Docker for the outer session; these inner sessions choose processes on purpose.
        monkeypatch.delenv("TESTINFRA_REQUIRE_DOCKER", raising=False)
    config = pytester._request.config
    pytester.makepyfile(
        specs=SPECS.format(
            image1=image_or_address(WEB_SERVER1, config, backend),
            image2=image_or_address(WEB_SERVER2, config, backend),
        )
    )
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    return pytester
