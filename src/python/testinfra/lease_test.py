"""Leases: one instance for the machine's test processes, removed by its keeper once unused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from testinfra._backends.base import Resource
from testinfra._child import child_env
from testinfra._lease import GRACE
from testinfra.conftest import report
from testinfra.conftest import run_resources

# The test notes which instance it got, says it is using it, then waits until told to go on.
LEASED_TEST = """
import json
import os
import pathlib
import time
from dataclasses import replace

import httpx
from specs import WS1
from testinfra import service_fixture

# Each test's lease of its own (the env is part of the lease's key): tests running at once, here
# or in another checkout, never share one.
web = service_fixture(replace(WS1, env={"LEASE_OF": pathlib.Path.cwd().name}), scope="lease")

def test_uses_the_lease(web):
    note = {"id": web.resource_id, "url": web.url, "pid": os.getpid()}
    pathlib.Path(f"using-{os.getpid()}.json").write_text(json.dumps(note))
    go = pathlib.Path("go")
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert httpx.get(web.url + "/health").status_code == 200
"""
TIMEOUT = 120.0


def session(inner: pytest.Pytester, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, "test_leased.py"],
        cwd=inner.path,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_users(
    inner: pytest.Pytester, count: int, *sessions: subprocess.Popen[bytes]
) -> list[dict[str, str]]:
    deadline = time.monotonic() + TIMEOUT
    while len(list(inner.path.glob("using-*.json"))) < count:
        for proc in sessions:
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the sessions did not get their service"
        time.sleep(0.02)
    return [_note(path) for path in inner.path.glob("using-*.json")]


def _note(path: Path) -> dict[str, str]:
    """A test's note, once its writer has finished it (it may be seen half-written)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            note: dict[str, str] = json.loads(path.read_text())
            return note
        except json.JSONDecodeError:
            assert time.monotonic() < deadline, f"{path} was never completed"
            time.sleep(0.02)


def finish(proc: subprocess.Popen[bytes]) -> str:
    output, _ = proc.communicate(timeout=TIMEOUT)
    return output.decode(errors="replace")


def lease_resources(instance: str) -> list[Resource]:
    """The resources of the lease whose instance is `instance`."""
    runs = {r.run for r in run_resources_everywhere() if r.id == instance}
    return [r for r in run_resources_everywhere() if r.run in runs]


def run_resources_everywhere() -> list[Resource]:
    return [r for r in run_resources("") if r.run.startswith("lease-")]


def seconds_until_gone(instance: str) -> float:
    start = time.monotonic()
    while lease_resources(instance):
        assert time.monotonic() - start < GRACE + TIMEOUT / 4, f"the lease of {instance} was never removed"
        time.sleep(0.05)
    return time.monotonic() - start


def test_concurrent_processes_share_one_instance_which_goes_once_unused(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_leased=LEASED_TEST)
    first, second = session(inner), session(inner)
    try:
        notes = wait_for_users(inner, 2, first, second)
        assert len({note["id"] for note in notes}) == 1, "two processes got two instances"
        (inner.path / "go").touch()
        assert "1 passed" in finish(first)
        assert "1 passed" in finish(second)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    seconds_until_gone(notes[0]["id"])


def test_a_lease_kept_warm_is_reused_by_the_next_run_listed_and_reaped(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_leased=LEASED_TEST)
    (inner.path / "go").touch()
    warm = {"TESTINFRA_REUSE_TTL": "120"}
    assert "1 passed" in finish(session(inner, env=warm))
    (first,) = [json.loads(path.read_text()) for path in inner.path.glob("using-*.json")]
    listing = cli("ls")
    assert any(first["id"] in line and " warm " in line for line in listing.splitlines()), listing
    for path in inner.path.glob("using-*.json"):
        path.unlink()
    assert "1 passed" in finish(session(inner, env=warm))
    (second,) = [json.loads(path.read_text()) for path in inner.path.glob("using-*.json")]
    assert second["id"] == first["id"], "the next run started a new instance"
    removed = reap_leases_of(first["id"])
    assert "removed" in removed and first["id"] in removed
    assert lease_resources(first["id"]) == []


# A leased service that can forget its state; RESET_FAILS=1 makes its reset fail.
RESET_TEST = """
import json
import os
import pathlib
from dataclasses import replace

from specs import WS1
from testinfra import CallableReset
from testinfra import service_fixture

def forget(service):
    if os.environ.get("RESET_FAILS"):
        raise RuntimeError("it cannot forget")
    with open("resets", "a") as out:
        out.write(service.resource_id + "\\n")

web = service_fixture(
    replace(WS1, env={"LEASE_OF": pathlib.Path.cwd().name}, reset=CallableReset(forget)), scope="lease"
)

def test_uses_the_lease(web):
    pathlib.Path(f"using-{os.getpid()}.json").write_text(json.dumps({"id": web.resource_id}))
"""


def test_a_warm_lease_is_reset_before_reuse_and_replaced_when_it_cannot_be(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_leased=RESET_TEST)
    warm = {"TESTINFRA_REUSE_TTL": "120"}

    def run(**env: str) -> str:
        for path in inner.path.glob("using-*.json"):
            path.unlink()
        output = finish(session(inner, env={**warm, **env}))
        assert "1 passed" in output, output[-3000:]
        (note,) = [json.loads(path.read_text()) for path in inner.path.glob("using-*.json")]
        made.append(str(note["id"]))
        return made[-1]

    made: list[str] = []
    resets = inner.path / "resets"
    try:
        first = run()
        assert not resets.exists(), "a new instance was reset"
        assert run() == first
        assert resets.read_text().split() == [first], "the warm instance was not reset before reuse"
        replaced = run(RESET_FAILS="1")
        assert replaced != first, "an instance that could not be reset was reused"
        assert first not in {r.id for r in run_resources_everywhere()}, "the instance it replaced is left"
    finally:
        reap_leases_of(*made)
    assert [r for r in run_resources_everywhere() if r.id in made] == []


def reap_leases_of(*instances: str) -> str:
    """`python -m testinfra reap` of the leases holding these instances, and of nobody else's."""
    runs = sorted({r.run for r in run_resources_everywhere() if r.id in instances})
    return "".join(cli("reap", "--run", run) for run in runs)


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "testinfra", *args], capture_output=True, text=True, env=child_env()
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("victim", ["starter", "attached"])
def test_a_killed_user_leaves_the_lease_to_the_others_then_nothing(
    inner: pytest.Pytester, backend: str, victim: str
) -> None:
    inner.makepyfile(test_leased=LEASED_TEST)
    first = session(inner)
    try:
        (starter,) = wait_for_users(inner, 1, first)
        second = session(inner)
        notes = wait_for_users(inner, 2, first, second)
        (attached,) = [note for note in notes if note["pid"] != starter["pid"]]
        killed, survivor = (first, second) if victim == "starter" else (second, first)
        target = starter if victim == "starter" else attached
        os.kill(int(target["pid"]), signal.SIGKILL)
        killed.communicate(timeout=TIMEOUT)
        (inner.path / "go").touch()
        assert "1 passed" in finish(survivor), "the surviving user lost its service"
        seconds = seconds_until_gone(starter["id"])
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    report(f"lease user SIGKILLed ({victim})", backend, seconds)


def test_a_killed_worker_mid_lease_leaves_nothing(inner: pytest.Pytester, backend: str) -> None:
    inner.makepyfile(
        test_leased=LEASED_TEST.replace(
            "def test_uses_the_lease(web):",
            "import pytest\n\n@pytest.mark.parametrize('n', range(2))\ndef test_uses_the_lease(web, n):",
        )
    )
    proc = session(inner, "-n", "2")
    try:
        notes = wait_for_users(inner, 2, proc)
        os.kill(int(notes[0]["pid"]), signal.SIGKILL)
        (inner.path / "go").touch()
        finish(proc)  # xdist reports the killed worker's test as failed
        seconds = seconds_until_gone(notes[0]["id"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report("xdist worker SIGKILLed mid-lease", backend, seconds)


def test_a_killed_keeper_leaves_orphans_the_next_sweep_removes(inner: pytest.Pytester, backend: str) -> None:
    inner.makepyfile(test_leased=LEASED_TEST)
    (inner.path / "go").touch()
    assert "1 passed" in finish(session(inner, env={"TESTINFRA_REUSE_TTL": "120"}))
    (note,) = [json.loads(path.read_text()) for path in inner.path.glob("using-*.json")]
    leased = lease_resources(note["id"])
    assert leased and all(r.owner is not None for r in leased)
    keeper = leased[0].owner
    assert keeper is not None
    os.kill(keeper.pid, signal.SIGKILL)
    t0 = time.monotonic()
    # Any session's first start sweeps orphans: this one's.
    inner.makepyfile(
        test_other="from specs import WS1\nfrom testinfra import service_fixture\n\nweb = service_fixture(WS1)\n\ndef test_one(web):\n    pass\n"
    )
    assert "1 passed" in finish(
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_other.py"],
            cwd=inner.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    )
    assert lease_resources(note["id"]) == []
    report("lease keeper SIGKILLed", backend, time.monotonic() - t0)


# Three tests, each with a fresh instance of its own; HOLD=1 makes the first wait until told to go.
SPARE_TEST = """
import json
import os
import pathlib
import time
from dataclasses import replace

import pytest
from specs import WS1
from testinfra import service_fixture

web = service_fixture(replace(WS1, env={"LEASE_OF": pathlib.Path.cwd().name}))

@pytest.mark.parametrize("n", range(3))
def test_gets_a_fresh_instance(web, n):
    pathlib.Path(f"using-{n}.json").write_text(json.dumps({"id": web.resource_id, "pid": os.getpid()}))
    deadline = time.monotonic() + 120
    while os.environ.get("HOLD") and not pathlib.Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def test_spares_left_for_the_next_run_serve_one_test_each_and_go_with_their_user(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_leased=SPARE_TEST)
    warm = {"TESTINFRA_REUSE_TTL": "120"}

    def start(**env: str) -> subprocess.Popen[bytes]:
        for path in [*inner.path.glob("using-*.json"), inner.path / "go"]:
            path.unlink(missing_ok=True)
        return session(inner, env={**warm, **env})

    def ids() -> list[str]:
        return [json.loads(path.read_text())["id"] for path in sorted(inner.path.glob("using-*.json"))]

    assert "3 passed" in finish(start())
    first = ids()
    second = start(HOLD="1")  # its first test holds its instance while we look at it
    key = ""
    try:
        (note,) = wait_for_users(inner, 1, second)
        (run,) = {r.run for r in run_resources("") if r.id == note["id"]}
        (inner.path / "go").touch()
        assert "3 passed" in finish(second)
        if backend == "process":
            # A local process runs code from the test's sandbox, which Pants removes: no spares.
            assert not run.startswith("lease-"), run
            return
        assert run.startswith("lease-"), f"the next run started its own instance ({run})"
        key = run.rsplit("-", 1)[0]
        assert len(set(first + ids())) == 6, "a test got an instance another test used"
        for instance in ids():
            seconds_until_gone(instance)  # a used spare goes with its user
        left = wait_for_spares(key, 3)
        assert not {r.id for r in left} & set(first + ids())
        listing = cli("ls")
        assert all(" warm " in line for line in listing.splitlines() if key in line), listing
        # Spares found dead are never handed out, and their keepers remove them at once.
        client = docker.from_env()
        try:
            for resource in left:
                client.containers.get(resource.id).kill()
        finally:
            client.close()
        assert "3 passed" in finish(start())
        assert not {r.id for r in left} & set(ids()), "a test got a dead spare"
        for resource in left:
            seconds_until_gone(resource.id)
        left = wait_for_spares(key, 3)
        held = start(HOLD="1")
        try:
            (note,) = wait_for_users(inner, 1, held)
            os.kill(int(note["pid"]), signal.SIGKILL)
            held.communicate(timeout=TIMEOUT)
        finally:
            if held.poll() is None:
                held.kill()
                held.communicate()
        assert note["id"] in {r.id for r in left}, "the session did not take a spare"
        seconds = seconds_until_gone(note["id"])
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
        for run_id in {r.run for r in run_resources("") if key and r.run.startswith(key + "-")}:
            cli("reap", "--run", run_id)
    assert not [r for r in run_resources("") if r.run.startswith(key + "-")]
    report("a spare's user SIGKILLed mid-test", backend, seconds)


def wait_for_spares(key: str, count: int) -> list[Resource]:
    """The containers of `count` spares of lease `key`, once their keepers have started them."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        spares = [r for r in run_resources("") if r.run.startswith(key + "-") and r.kind == "container"]
        if len({r.run for r in spares}) >= count:
            return spares
        assert time.monotonic() < deadline, f"{count} spares were not left: {spares}"
        time.sleep(0.1)
