"""The plugin end to end: real pytest sessions in subprocesses, on both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testinfra import ImageNotFoundError
from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import ServiceStartError
from testinfra import TcpCheck
from testinfra._process import records_dir
from testinfra._reaper import list_resources
from testinfra._state import new_run_id
from testinfra._state import process_start_time


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
            import time
            import httpx
            from specs import WS1
            from testinfra import service_fixture

            web_server1 = service_fixture(WS1)

            def test_fails(web_server1):
                httpx.get(web_server1.url + "/dogs/424242")
                # Container logs reach the engine asynchronously: fail once the line is there.
                deadline = time.monotonic() + 30
                while "/dogs/424242" not in web_server1.logs() and time.monotonic() < deadline:
                    time.sleep(0.01)
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
    backend: str, web_server1_image: str
) -> None:
    broken = ServiceSpec(
        name="web_server1",
        image=web_server1_image,
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


@pytest.mark.testinfra_docker
def test_an_image_the_engine_does_not_have_is_a_clear_error() -> None:
    spec = ServiceSpec(name="ghost", image="labrador/no-such-image:never")
    manager = Manager(new_run_id(), "docker")
    try:
        with pytest.raises(ImageNotFoundError, match="'labrador/no-such-image:never' of service 'ghost'"):
            manager.start(spec)
    finally:
        manager.close()
    assert list_resources(run=manager.run_id) == []


def test_starting_a_service_first_sweeps_orphans_of_dead_runs(tmp_path: Path) -> None:
    # An orphan as a SIGKILLed run would leave it: a live service process whose owner is gone.
    owner = subprocess.Popen([sys.executable, "-c", ""])
    owner.wait()
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, start_new_session=True
    )
    record = records_dir() / f"deadrun-{owner.pid}-0.json"
    record.write_text(
        json.dumps(
            {
                "run": "deadrun",
                "service": "orphan",
                "pid": orphan.pid,
                "start_time": process_start_time(orphan.pid),
                "owner_pid": owner.pid,
                "owner_start_time": None,
                "port": 0,
            }
        )
    )
    try:
        (found,) = list_resources(run="deadrun")
        assert found.orphaned
        manager = Manager(new_run_id(), "process")
        try:
            command = (sys.executable, "-m", "http.server", "--bind", "{host}", "{port}")
            manager.start(ServiceSpec(name="plain", command=command, ready=TcpCheck()))
        finally:
            manager.close()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert list_resources(run="deadrun") == []
    finally:
        orphan.kill()
        orphan.wait()
        record.unlink(missing_ok=True)
