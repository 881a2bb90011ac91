"""Nothing is left behind, whatever happens to a session: real sessions in subprocesses, killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

import testinfra
from testinfra import Settings
from testinfra._backends.base import Resource
from testinfra._owner import process_start_time
from testinfra._ports import held_port_locks
from testinfra._statedir import StateDir
from testinfra.conftest import report
from testinfra.conftest import run_resources

CLEAN_TIMEOUT = 20.0

# One session-scoped web_server2 (and its web_server1); the test says where they are, then waits.
BLOCKING_TEST = """
import json
import os
import pathlib
import time

from specs import WS2
from testinfra import service_fixture

web_server2 = service_fixture(WS2, scope="session")

def test_blocks(web_server2, testinfra_manager):
    web_server1 = web_server2.dependency("web_server1")
    info = {"run": testinfra_manager.run_id, "pid": os.getpid(), "ports": [web_server1.port, web_server2.port]}
    # Written aside, then renamed: the watcher must never read a half-written file.
    pathlib.Path("ready.json.tmp").write_text(json.dumps(info))
    os.replace("ready.json.tmp", "ready.json")
    go = pathlib.Path("go")
    deadline = time.monotonic() + 300
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert go.exists()
    assert web_server1.exit_code() is not None, "web_server1 was killed from outside"
"""


def start_session(
    inner: pytest.Pytester, *args: str, test: str = BLOCKING_TEST
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    marker, go = inner.path / "ready.json", inner.path / "go"
    inner.makepyfile(test_blocking=test)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, "test_blocking.py"],
        cwd=inner.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, marker, go


def wait_for_marker(proc: subprocess.Popen[bytes], marker: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, f"the inner session exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "the inner session did not start its services within 60s"
        time.sleep(0.05)
    info: dict[str, Any] = json.loads(marker.read_text())
    return info


def seconds_until_gone(run: str, owner: int | None = None) -> float:
    """Seconds until no resource of `run` (owned by `owner`, if given) remains; fails after CLEAN_TIMEOUT."""
    start = time.monotonic()
    while True:
        left = [r for r in run_resources(run) if owner is None or (r.owner and r.owner.pid == owner)]
        elapsed = time.monotonic() - start
        if not left:
            return elapsed
        assert elapsed < CLEAN_TIMEOUT, f"still there after {CLEAN_TIMEOUT}s: {left}"
        time.sleep(0.05)


def assert_nothing_left(info: dict[str, Any], before: list[Resource]) -> None:
    assert run_resources(info["run"]) == []
    assert not [r for r in before if r.kind == "process" and process_start_time(int(r.id)) is not None]
    held = held_port_locks(StateDir(Settings.from_env().state_dir))
    assert not [port for port in info["ports"] if held.get(port) == info["pid"]]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def check_next_run_starts_cleanly(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_next="""
        import httpx
        from specs import WS2
        from testinfra import service_fixture

        web_server2 = service_fixture(WS2)

        def test_kennel(web_server2):
            assert httpx.get(web_server2.url + "/kennel").json() == {"count": 0, "names": []}
        """
    )
    inner.runpytest_subprocess("-p", "no:cacheprovider", "test_next.py").assert_outcomes(passed=1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_to_the_session_leaves_nothing(
    inner: pytest.Pytester, backend: str, sig: signal.Signals
) -> None:
    proc, marker, _ = start_session(inner)
    try:
        info = wait_for_marker(proc, marker)
        before = run_resources(info["run"])
        assert {r.name for r in before} >= {"web_server1", "web_server2"}
        proc.send_signal(sig)
        t0 = time.monotonic()
        assert proc.wait(timeout=60) != 0
        seconds = seconds_until_gone(info["run"]) + (time.monotonic() - t0)
    finally:
        stop(proc)
    assert_nothing_left(info, before)
    report(f"session {sig.name}", backend, seconds)
    check_next_run_starts_cleanly(inner)


# As BLOCKING_TEST, at function scope and three times: while the first blocks, the warm pool
# starts the next two graphs ahead.
POOLED_BLOCKING_TEST = BLOCKING_TEST.replace('scope="session"', 'scope="function"').replace(
    "def test_blocks(", "import pytest\n\n@pytest.mark.parametrize('n', range(3))\ndef test_blocks(n, "
)


def test_a_session_killed_with_a_warm_pool_leaves_nothing(inner: pytest.Pytester, backend: str) -> None:
    proc, marker, _ = start_session(inner, test=POOLED_BLOCKING_TEST)
    try:
        info = wait_for_marker(proc, marker)
        deadline = time.monotonic() + 60
        while len([r for r in run_resources(info["run"]) if r.kind != "network"]) < 4:
            assert time.monotonic() < deadline, "the pool did not start the next graphs ahead"
            time.sleep(0.02)
        before = run_resources(info["run"])
        proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        proc.wait(timeout=60)
        seconds = seconds_until_gone(info["run"]) + (time.monotonic() - t0)
    finally:
        stop(proc)
    assert_nothing_left(info, before)
    report("SIGKILL with a warm pool filling", backend, seconds)


def test_a_killed_xdist_worker_leaves_nothing(inner: pytest.Pytester, backend: str) -> None:
    proc, marker, go = start_session(inner, "-n", "2")
    try:
        info = wait_for_marker(proc, marker)
        before = run_resources(info["run"])
        os.kill(info["pid"], signal.SIGKILL)
        seconds = seconds_until_gone(info["run"], owner=info["pid"])
        go.touch()
        proc.wait(timeout=60)  # xdist reports the crashed worker's test as failed and ends
        seconds_until_gone(info["run"])
    finally:
        stop(proc)
    assert_nothing_left(info, before)
    report("xdist worker SIGKILL", backend, seconds)


def test_a_service_killed_from_outside_is_still_cleaned_up(inner: pytest.Pytester, backend: str) -> None:
    proc, marker, go = start_session(inner)
    try:
        info = wait_for_marker(proc, marker)
        before = run_resources(info["run"])
        (victim,) = [r for r in before if r.name.startswith("web_server1") and r.kind != "network"]
        t0 = time.monotonic()
        if victim.kind == "process":
            os.kill(int(victim.id), signal.SIGKILL)
            while process_start_time(int(victim.id)) is not None:  # dead once a zombie; the session reaps it
                time.sleep(0.01)
        else:
            client = docker.from_env()
            client.containers.get(victim.id).kill()
            client.containers.get(victim.id).wait()
            client.close()
        # Only now: the inner test checks at once that web_server1 is down.
        go.touch()
        assert proc.wait(timeout=60) == 0, "the test saw web_server1 dead and the session ended normally"
        seconds = seconds_until_gone(info["run"]) + (time.monotonic() - t0)
    finally:
        stop(proc)
    assert_nothing_left(info, before)
    report("service killed", backend, seconds)


def test_the_watchdog_outlives_the_sources_it_was_started_from(
    inner: pytest.Pytester, backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As under Pants: the session imports testinfra from a sandbox that is deleted once it is killed.
    sandbox = tmp_path / "sandbox"
    shutil.copytree(Path(testinfra.__file__).parent, sandbox / "testinfra")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(sandbox), os.environ["PYTHONPATH"]]))
    proc, marker, _ = start_session(inner)
    try:
        info = wait_for_marker(proc, marker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shutil.rmtree(sandbox)
        seconds = seconds_until_gone(info["run"])
    finally:
        stop(proc)
    report("SIGKILL, sources deleted", backend, seconds)
