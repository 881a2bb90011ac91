"""The plugin end to end: real pytest sessions in subprocesses, on both backends."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from testinfra import BackendName
from testinfra import ImageNotFoundError
from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import ServiceStartError
from testinfra import Settings
from testinfra import TcpCheck
from testinfra._owner import Owner
from testinfra._owner import process_start_time
from testinfra._statedir import StateDir
from testinfra._statedir import write_record
from testinfra.conftest import ADDRESSES
from testinfra.conftest import image_or_address
from testinfra.conftest import run_resources


def test_dependencies_start_first_and_get_their_address(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        textwrap.dedent(
            """
            import httpx
            from specs import WS2
            from testinfra import service_fixture

            kennel = service_fixture(WS2)

            def test_kennel(kennel):
                web_server1 = kennel.dependency("web_server1")
                assert httpx.post(web_server1.url + "/dogs", json={"name": "Rex", "age": 3}).status_code == 201
                assert httpx.get(kennel.url + "/kennel").json() == {"count": 1, "names": ["Rex"]}
                assert kennel.host == "127.0.0.1" and web_server1.port != kennel.port
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

            web = service_fixture(WS1)

            def test_fails(web):
                httpx.get(web.url + "/dogs/424242")
                # Container logs reach the engine asynchronously: fail once the line is there.
                deadline = time.monotonic() + 30
                while "/dogs/424242" not in web.logs() and time.monotonic() < deadline:
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
    backend: BackendName, web_server1_image: str
) -> None:
    broken = ServiceSpec(
        name="web_server1",
        image=web_server1_image,
        command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"),
        env={"WEB_SERVER1_MAX_DOGS": "lots"},
        # Far beyond the test timeout: only an error on exit can end this test in time.
        start_timeout=3600,
    )
    manager = Manager(Settings(backend=backend))
    try:
        with pytest.raises(ServiceStartError) as info:
            manager.start(broken)
    finally:
        manager.close()
    assert info.value.exit_code == 1
    assert "max_dogs" in info.value.logs_tail
    assert "exited before it was ready" in str(info.value)
    assert run_resources(manager.run_id) == []


@pytest.mark.testinfra_docker
def test_an_image_the_engine_does_not_have_is_a_clear_error() -> None:
    spec = ServiceSpec(name="ghost", image="labrador/no-such-image:never")
    manager = Manager(Settings(backend="docker"))
    try:
        with pytest.raises(ImageNotFoundError, match="'labrador/no-such-image:never' of service 'ghost'"):
            manager.start(spec)
    finally:
        manager.close()
    assert run_resources(manager.run_id) == []


def test_starting_a_service_first_sweeps_orphans_of_dead_runs() -> None:
    # An orphan as a SIGKILLed run would leave it: a live service process whose owner is gone.
    owner = subprocess.Popen([sys.executable, "-c", ""])
    owner.wait()
    me = Owner.me()
    dead_owner = Owner(owner.pid, 1, me.pidns, me.boot)
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, start_new_session=True
    )
    settings = Settings.from_env()
    record = StateDir(settings.state_dir).sub("processes") / "deadrun-orphan-0.json"
    write_record(
        record,
        {
            "run": "deadrun",
            "service": "orphan",
            "owner": str(dead_owner),
            "pid": orphan.pid,
            "start_time": process_start_time(orphan.pid),
            "port": 0,
            "log": "",
            "workdir": None,
            "kept": False,
        },
    )
    try:
        (found,) = run_resources("deadrun")
        assert found.orphaned
        manager = Manager(Settings(backend="process"))
        try:
            command = (sys.executable, "-m", "http.server", "--bind", "{host}", "{port}")
            manager.start(ServiceSpec(name="plain", command=command, ready=TcpCheck()))
        finally:
            manager.close()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert run_resources("deadrun") == []
    finally:
        orphan.kill()
        orphan.communicate()
        record.unlink(missing_ok=True)


@pytest.mark.testinfra_docker
def test_args_and_tmpfs_reach_the_container(pytestconfig: pytest.Config) -> None:
    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    args = ("--host", "{host}", "--port", "{port}")
    spec = ServiceSpec(name="web", image=image, args=args, port=81, tmpfs=("/scratch",))
    manager = Manager(Settings(backend="docker"))
    try:
        service = manager.start(spec)
        status, mounts = service.run_command(["cat", "/proc/mounts"])
        assert status == 0
        assert "tmpfs /scratch tmpfs" in mounts
        # Ready means /health answered through the published 81: the app listens where args said.
        assert "Uvicorn running on http://0.0.0.0:81" in service.logs()
    finally:
        manager.close()
