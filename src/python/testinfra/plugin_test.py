"""The plugin end to end: real pytest sessions in subprocesses, on both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import ServiceStartError
from testinfra._pants import resolve_image
from testinfra._ports import held_port_locks
from testinfra._reaper import list_resources
from testinfra._state import is_alive
from testinfra._state import new_run_id

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


def test_dependencies_start_first_and_get_their_address(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        textwrap.dedent(
            """
            import httpx
            from specs import WS2
            from testinfra import service_fixture

            web_server2 = service_fixture(WS2)

            def test_kennel(web_server2):
                web_server1 = web_server2.dependency("web_server1")
                assert httpx.post(web_server1.url + "/dogs", json={"name": "Rex", "age": 3}).status_code == 201
                assert httpx.get(web_server2.url + "/kennel").json() == {"count": 1, "names": ["Rex"]}
                assert web_server2.host == "127.0.0.1" and web_server1.port != web_server2.port
            """
        )
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_failed_test_reports_the_service_logs(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        textwrap.dedent(
            """
            import httpx
            from specs import WS1
            from testinfra import service_fixture

            web_server1 = service_fixture(WS1)

            def test_fails(web_server1):
                httpx.get(web_server1.url + "/dogs/424242")
                assert False, "deliberate failure"
            """
        )
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*testinfra: web_server1 (*, running) at http://127.0.0.1:*",
            '*"GET /dogs/424242 HTTP/1.1" 404*',
        ]
    )


def test_a_service_that_crashes_on_start_fails_at_once_with_its_logs(
    backend: str, pytestconfig: pytest.Config
) -> None:
    broken = ServiceSpec(
        name="web_server1",
        image=image_or_address(WEB_SERVER1, pytestconfig, backend),
        command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"),
        env={"WEB_SERVER1_MAX_DOGS": "lots"},
        # Far beyond the test timeout: only an error on exit can end this test in time.
        start_timeout=3600,
    )
    manager = Manager(new_run_id(), backend)
    try:
        with pytest.raises(ServiceStartError) as info:
            manager.start(broken)
    finally:
        manager.close()
    assert info.value.exit_code == 1
    assert "max_dogs" in info.value.logs_tail
    assert "exited before it was ready" in str(info.value)
    assert list_resources(run=manager.run_id) == []


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the inner session exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_test_tears_everything_down(inner: pytest.Pytester, sig: signal.Signals) -> None:
    marker = inner.path / "ready.json"
    inner.makepyfile(
        textwrap.dedent(
            f"""
            import json, os, threading
            from specs import WS2
            from testinfra import service_fixture

            web_server2 = service_fixture(WS2, scope="session")

            def test_blocks(web_server2):
                ports = [web_server2.port, web_server2.dependency("web_server1").port]
                with open({str(marker)!r}, "w") as f:
                    json.dump({{"run": os.environ["TESTINFRA_RUN_ID"], "ports": ports}}, f)
                threading.Event().wait(300)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=inner.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = json.loads(wait_for_file(marker, proc, timeout=60))
        before = list_resources(run=ready["run"])
        assert before, "the inner session should own services now"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list_resources(run=ready["run"]) == []
    assert not any(is_alive(int(r.id), None) for r in before if r.kind == "process")
    assert not set(ready["ports"]) & set(held_port_locks())
