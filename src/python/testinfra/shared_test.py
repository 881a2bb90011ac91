"""Shared services across xdist workers, concurrent runs, and services kept after a failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from testinfra._child import child_env
from testinfra.conftest import report
from testinfra.conftest import run_resources

# Six tests over two workers, all on one shared web_server2; each notes which instance it got.
SHARED_TESTS = """
import json
import os
import os

import httpx
import pytest
from specs import WS2
from testinfra import SharedServiceError
from testinfra import service_fixture

web_server2 = service_fixture(WS2, scope="shared")

@pytest.mark.parametrize("n", range(6))
def test_uses_the_shared_service(web_server2, n, testinfra_manager):
    assert httpx.get(web_server2.url + "/kennel").status_code == 200
    web_server1 = web_server2.dependency("web_server1")
    note = {"run": testinfra_manager.run_id, "worker": os.getpid(),
            "ids": [web_server2.resource_id, web_server1.resource_id]}
    with open("notes.jsonl", "a") as f:
        f.write(json.dumps(note) + "\\n")

def test_a_shared_service_cannot_be_killed_by_one_test(web_server2):
    with pytest.raises(SharedServiceError, match="shared service 'web_server2'"):
        web_server2.kill()
"""


def run_sessions(inner: pytest.Pytester, count: int) -> list[dict[str, object]]:
    notes = inner.path / "notes.jsonl"
    inner.makepyfile(test_shared=SHARED_TESTS)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "test_shared.py"]
    sessions = [
        subprocess.Popen(command, cwd=inner.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(count)
    ]
    for session in sessions:
        output, _ = session.communicate(timeout=300)
        assert session.returncode == 0, output.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in notes.read_text().splitlines()]


def test_one_instance_per_run_for_all_its_workers(inner: pytest.Pytester) -> None:
    notes = run_sessions(inner, 1)
    assert len(notes) == 6
    assert len({note["worker"] for note in notes}) == 2, "both workers ran tests"
    assert len({tuple(note["ids"]) for note in notes}) == 1  # type: ignore[arg-type]
    (run,) = {note["run"] for note in notes}
    assert run_resources(str(run)) == []


def test_concurrent_runs_each_get_their_own_instance(inner: pytest.Pytester) -> None:
    notes = run_sessions(inner, 4)
    runs: dict[object, set[tuple[str, ...]]] = {}
    for note in notes:
        runs.setdefault(note["run"], set()).add(tuple(note["ids"]))  # type: ignore[arg-type]
    assert len(runs) == 4
    assert all(len(instances) == 1 for instances in runs.values())
    assert len({ids for instances in runs.values() for ids in instances}) == 4
    for run in runs:
        assert run_resources(str(run)) == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testinfra", *args], capture_output=True, text=True, env=child_env()
    )


def test_keep_on_failure_leaves_the_services_running_and_says_how_to_remove_them(
    inner: pytest.Pytester,
) -> None:
    info_file = inner.path / "info.json"
    inner.makepyfile(
        test_keep="""
        import json
        import pathlib

        from specs import WS1
        from testinfra import service_fixture

        web_server1 = service_fixture(WS1)

        def test_fails(web_server1, testinfra_manager):
            info = {"url": web_server1.url, "run": testinfra_manager.run_id}
            pathlib.Path("info.json").write_text(json.dumps(info))
            assert False, "deliberate"

        def test_passes(web_server1):
            pass
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "--testinfra-keep-on-failure")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*testinfra: services kept after failed tests*",
            "web_server1 at http://127.0.0.1:*",
            "remove them with: python -m testinfra reap --kept --run *",
        ]
    )
    info = json.loads(info_file.read_text())
    kept = run_resources(info["run"])
    try:
        assert [(r.name, r.kept) for r in kept if r.kind != "network"] == [
            ("web_server1", True)
        ], "only the failed test's service is kept"
        assert httpx.get(info["url"] + "/health").status_code == 200
        assert "kept" in run_cli("ls", "--run", info["run"]).stdout
        # A later session sweeps orphans before its first service, and leaves kept services alone.
        inner.makepyfile(
            test_other="""
            from specs import WS1
            from testinfra import service_fixture

            web_server1 = service_fixture(WS1)

            def test_starts_a_service(web_server1):
                pass
            """
        )
        inner.runpytest_subprocess("-p", "no:cacheprovider", "test_other.py").assert_outcomes(passed=1)
        assert run_resources(info["run"]) == kept
        # So does one of another job or user (another state directory): "kept" is on the resource.
        other_job = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_other.py"],
            cwd=inner.path,
            env={**os.environ, "TESTINFRA_STATE_DIR": str(inner.path / "other-job-state")},
            capture_output=True,
            text=True,
        )
        assert other_job.returncode == 0, other_job.stdout[-2000:]
        assert run_resources(info["run"]) == kept
    finally:
        removed = run_cli("reap", "--kept", "--run", info["run"])
    assert removed.returncode == 0
    assert "removed" in removed.stdout
    assert run_resources(info["run"]) == []


# Four tests on one shared web_server2 graph whose readiness waits for a gate the outer test opens;
# each probe leaves a note of the worker that runs it, so the outer test can kill the starter.
GATED_TESTS = """
import json
import os
import os
import pathlib
from dataclasses import dataclass

import pytest
from specs import WS2
from testinfra import HttpCheck
from testinfra import service_fixture


@dataclass(frozen=True)
class Gate:
    def probe(self, target):
        pathlib.Path(f"probing-{os.getpid()}").touch()
        return pathlib.Path("gate").exists() and HttpCheck().probe(target)


GATED = WS2.__class__(**{**WS2.__dict__, "ready": Gate()})
web_server2 = service_fixture(GATED, scope="shared")


@pytest.mark.parametrize("n", range(4))
def test_uses_it(web_server2, n, testinfra_manager):
    pathlib.Path(f"run-{testinfra_manager.run_id}").touch()
    assert web_server2.exit_code() is None
"""


def test_a_shared_start_whose_starter_is_killed_is_taken_over_and_nothing_is_left(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_gated=GATED_TESTS)
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "test_gated.py"],
        cwd=inner.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(inner.path.glob("probing-*")):
            assert session.poll() is None and time.monotonic() < deadline, "no worker began the shared start"
            time.sleep(0.02)
        (starter,) = {int(path.name.split("-")[1]) for path in inner.path.glob("probing-*")}
        os.kill(starter, signal.SIGKILL)  # mid-start: its graph is half up, its lock released
        (inner.path / "gate").touch()
        output, _ = session.communicate(timeout=300)
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()
    text = output.decode(errors="replace")
    # The killed worker's test fails (xdist reports the crash); the others ran on the new instance.
    assert "3 passed" in text, text[-3000:]
    (run,) = {path.name[len("run-") :] for path in inner.path.glob("run-*")}
    assert run_resources(run) == []
    report("shared starter SIGKILLed mid-start", backend)


FAILING_TESTS = """
import pytest
from testinfra import ServiceSpec
from testinfra import service_fixture

from specs import IMAGES

BROKEN = ServiceSpec(
    name="broken",
    image=IMAGES["web_server1"],
    command=("{python}", "-c", "open('starts', 'a').write('x'); raise SystemExit(1)"),
    env={"WEB_SERVER1_MAX_DOGS": "lots"},
)
broken = service_fixture(BROKEN, scope="shared")


@pytest.mark.parametrize("n", range(8))
def test_uses_it(broken, n):
    pass
"""


def test_a_shared_start_that_failed_fails_the_other_workers_at_once(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_failing=FAILING_TESTS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-n", "4", "test_failing.py")
    result.assert_outcomes(errors=8)
    result.stdout.fnmatch_lines(["*another process of this run could not start it*"])
    if backend == "process":
        # One start in all, not one per worker.
        assert (inner.path / "starts").read_text() == "x"


def test_doctor_reports_what_it_found() -> None:
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("python", "docker", "port range", "state dir"):
        assert heading in result.stdout
