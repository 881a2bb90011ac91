"""The plugin in-process (pytester.runpytest): settings, usage errors, markers, readiness, ports.

Possible because the plugin keeps its state on an object registered per session and undoes what
it changed at unconfigure.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Executor
from concurrent.futures import Future
from pathlib import Path

import pytest

from testinfra._child import child_env
from testinfra._pool import Pool


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory with the plugin, and no TESTINFRA_* setting from the outer session."""
    for name in ("BACKEND", "REQUIRE_DOCKER", "KEEP_ON_FAILURE", "LABEL", "PORT_RANGE"):
        monkeypatch.delenv(f"TESTINFRA_{name}", raising=False)
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    return pytester


SHOW_SETTINGS = """
def test_show(testinfra_manager):
    settings = testinfra_manager.settings
    print(f"SETTINGS backend={settings.backend} keep={settings.keep_on_failure}")
"""


@pytest.mark.parametrize(
    ("ini", "env", "options", "expected"),
    [
        ({}, {}, [], "backend=auto keep=False"),
        (
            {"testinfra_backend": "docker", "testinfra_keep_on_failure": "true"},
            {},
            [],
            "backend=docker keep=True",
        ),
        (
            {"testinfra_backend": "docker", "testinfra_keep_on_failure": "true"},
            {"TESTINFRA_BACKEND": "process", "TESTINFRA_KEEP_ON_FAILURE": "0"},
            [],
            "backend=process keep=False",
        ),
        (
            {"testinfra_backend": "docker"},
            {"TESTINFRA_BACKEND": "process", "TESTINFRA_KEEP_ON_FAILURE": "0"},
            ["--testinfra-backend=auto", "--testinfra-keep-on-failure"],
            "backend=auto keep=True",
        ),
    ],
    ids=["defaults", "ini", "env over ini", "option over env"],
)
def test_a_setting_comes_from_the_option_else_the_environment_else_the_ini_file(
    session: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ini: dict[str, str],
    env: dict[str, str],
    options: list[str],
    expected: str,
) -> None:
    session.makeini("[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in ini.items()))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    session.makepyfile(SHOW_SETTINGS)
    result = session.runpytest("-s", *options)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*SETTINGS {expected}"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TESTINFRA_BACKEND": "podman"},
            "ERROR: TESTINFRA_BACKEND='podman' is not one of auto, docker, process",
        ),
        (
            {"TESTINFRA_BACKEND": "process", "TESTINFRA_REQUIRE_DOCKER": "1"},
            "ERROR: Docker is required but the process backend was chosen; drop one of them",
        ),
        (
            {"TESTINFRA_REQUIRE_DOCKER": "2"},
            "ERROR: TESTINFRA_REQUIRE_DOCKER='2' is not a yes/no value: use 1 or 0",
        ),
        (
            {"TESTINFRA_PORT_RANGE": "20000"},
            "ERROR: TESTINFRA_PORT_RANGE='20000' is not of the form LOW-HIGH*",
        ),
        ({"TESTINFRA_LABEL": "Bad Label"}, "ERROR: label prefix 'Bad Label' is invalid*"),
    ],
    ids=["unknown backend", "docker required with processes", "not a flag", "port range", "label"],
)
def test_bad_settings_are_usage_errors_that_say_how_to_fix_them(
    session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    session.makepyfile("def test_nothing(): pass")
    result = session.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_state_directory_that_is_a_file_is_a_usage_error(
    session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "state").write_text("not a directory")
    monkeypatch.setenv("TESTINFRA_STATE_DIR", str(tmp_path / "state"))
    session.makepyfile("def test_nothing(): pass")
    result = session.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: testinfra state directory * is not a directory*"])


def test_the_docker_marker_skips_without_an_engine_and_fails_when_docker_is_required(
    session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    session.makepyfile(
        """
        import pytest

        @pytest.mark.testinfra_docker
        def test_needs_docker():
            pass
        """
    )
    skipped = session.runpytest("-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*no Docker engine on this machine: no Docker engine answers*"])
    failed = session.runpytest("--testinfra-require-docker")
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines(["*this test needs a Docker engine, and Docker is required here*"])


# Prints "ready" on its first start only; later starts find the marker in its workdir and stay quiet.
ONCE = (
    "import pathlib, sys, time\n"
    "marker = pathlib.Path(sys.argv[1]) / 'started'\n"
    "print('booting', flush=True)\n"
    "if not marker.exists():\n"
    "    marker.touch()\n"
    "    print('ready', flush=True)\n"
    "time.sleep(3600)\n"
)


def test_log_check_waits_for_a_line_printed_by_this_start_only(session: pytest.Pytester) -> None:
    session.makepyfile(
        f"""
        import pytest
        from testinfra import LogCheck, ServiceNotReadyError, ServiceSpec, service_fixture

        ONCE = ServiceSpec(
            name="once",
            command=("{{python}}", "-c", {ONCE!r}, "{{workdir}}"),
            ready=LogCheck(r"^ready$"),
            start_timeout=1.0,
        )
        once = service_fixture(ONCE)

        def test_restart_needs_a_new_ready_line(once):
            assert "ready" in once.logs()
            with pytest.raises(ServiceNotReadyError, match="not ready after 1.0s"):
                once.restart()  # "ready" from the first start is in the log, but is not this start's
        """
    )
    session.runpytest("--testinfra-backend=process").assert_outcomes(passed=1)


def test_a_service_that_never_gets_ready_fails_at_the_deadline_with_its_logs(
    session: pytest.Pytester,
) -> None:
    session.makepyfile(
        """
        import pytest
        from testinfra import LogCheck, ServiceNotReadyError, ServiceSpec

        QUIET = ServiceSpec(
            name="quiet",
            command=("{python}", "-c", "import time; print('still booting', flush=True); time.sleep(3600)"),
            ready=LogCheck("never printed"),
            start_timeout=0.5,
        )

        def test_not_ready(testinfra_manager):
            with pytest.raises(ServiceNotReadyError) as info:
                testinfra_manager.start(QUIET)
            assert "not ready after 0.5s" in str(info.value)
            assert "still booting" in info.value.logs_tail
        """
    )
    session.runpytest("--testinfra-backend=process").assert_outcomes(passed=1)


def test_a_probe_that_hangs_or_raises_cannot_outlast_the_deadline(session: pytest.Pytester) -> None:
    session.makepyfile(
        """
        import threading
        import pytest
        from testinfra import ServiceNotReadyError, ServiceSpec

        class Hangs:
            def probe(self, target):
                threading.Event().wait()  # never returns

        class Raises:
            def probe(self, target):
                raise RuntimeError("probe bug")

        def spec(check):
            command = ("{python}", "-c", "import time; time.sleep(3600)")
            return ServiceSpec(name="svc", command=command, ready=check, start_timeout=0.5)

        def test_hanging_probe(testinfra_manager):
            with pytest.raises(ServiceNotReadyError, match="did not even return"):
                testinfra_manager.start(spec(Hangs()))

        def test_raising_probe(testinfra_manager):
            with pytest.raises(ServiceNotReadyError, match="service 'svc': its readiness check .* raised"):
                testinfra_manager.start(spec(Raises()))
        """
    )
    session.runpytest("--testinfra-backend=process").assert_outcomes(passed=2)


def test_tcp_port_is_reserved_and_bindable_during_the_test(session: pytest.Pytester) -> None:
    session.makepyfile(
        """
        import os
        import socket
        from testinfra import Settings
        from testinfra._ports import held_port_locks
        from testinfra._statedir import StateDir

        def test_port(tcp_port):
            assert held_port_locks(StateDir(Settings.from_env().state_dir))[tcp_port] == os.getpid()
            socket.create_server(("127.0.0.1", tcp_port)).close()
        """
    )
    session.runpytest().assert_outcomes(passed=1)


def test_unconfigure_restores_the_sigterm_handler_it_replaced(
    session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signal, "getsignal", signal.getsignal)  # (restored below in any case)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        session.makepyfile(
            """
            import signal

            def test_sigterm_is_handled():
                assert callable(signal.getsignal(signal.SIGTERM))
            """
        )
        session.runpytest().assert_outcomes(passed=1)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_pytest_testinfra_beside_it_is_a_clear_error(tmp_path: Path) -> None:
    # The metadata of an installed pytest-testinfra, as pip would leave it.
    site = tmp_path / "site"
    dist_info = site / "pytest_testinfra-10.1.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: pytest-testinfra\nVersion: 10.1.1\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["testinfra.plugin"]\n')
    (tmp_path / "test_x.py").write_text("def test_x(): pass\n")
    env = child_env({"PYTHONPATH": f"{site}:{child_env()['PYTHONPATH']}"})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "pytest-testinfra 10.1.1 is installed beside labrador-testinfra" in result.stderr
    assert textwrap.dedent("pip uninstall pytest-testinfra") in result.stderr


class Inline(Executor):
    """Runs each start at once: every instance is started before the pool closes."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_closing_a_pool_removes_every_instance_even_after_one_removal_fails() -> None:
    numbers = iter(range(100))
    removed: list[int] = []

    def discard(graph: int) -> None:
        removed.append(graph)
        if graph == 0:
            raise RuntimeError("the engine refused to remove 0")

    pool = Pool(lambda: next(numbers), discard, Inline(), depth=3)
    pool.expect(10)
    with pytest.raises(RuntimeError, match="refused to remove 0"):
        pool.close()
    assert removed == [0, 1, 2]
