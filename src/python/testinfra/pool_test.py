"""Start cost hidden: warm pools for per-test instances, and graphs that start side by side."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import docker
import pytest

from testinfra import LogCheck
from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import Settings
from testinfra.conftest import run_resources

# web_server1, counting its starts in ./starts (process backend), then serving as usual.
COUNTED = (
    "import runpy, sys; open('starts', 'a').write('x'); "
    "sys.argv = ['web_server1', '--fd', sys.argv[1]]; "
    "runpy.run_module('labrador.web_server1.main', run_name='__main__')"
)

POOLED_TESTS = f"""
import json
import pytest
from specs import IMAGES
from testinfra import ServiceSpec
from testinfra import service_fixture

WEB = ServiceSpec(name="web_server1", image=IMAGES["web_server1"], command=("{{python}}", "-c", {COUNTED!r}, "{{fd}}"))
web = service_fixture(WEB)

@pytest.mark.parametrize("n", range(6))
def test_takes_one(web, n, testinfra_manager):
    with open("taken.jsonl", "a") as notes:
        notes.write(json.dumps({{"run": testinfra_manager.run_id, "id": web.resource_id}}) + "\\n")
    # A never-used instance: nobody wrote to it before this test.
    import httpx
    assert httpx.get(web.url + "/dogs").json() == []
    assert httpx.post(web.url + "/dogs", json={{"name": "Mine", "age": 1}}).status_code == 201
"""


def containers_created(run: str, since: float) -> int:
    client = docker.from_env()
    try:
        events = client.events(
            since=int(since),
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": "create", "label": f"org.labrador.testinfra.run={run}"},
        )
        return sum(1 for _ in events)
    finally:
        client.close()


def test_each_test_gets_a_never_used_instance_and_no_start_is_wasted(
    inner: pytest.Pytester, backend: str
) -> None:
    inner.makepyfile(test_pooled=POOLED_TESTS)
    t0 = time.time()
    inner.runpytest_subprocess("-p", "no:cacheprovider", "test_pooled.py").assert_outcomes(passed=6)
    notes = [json.loads(line) for line in (inner.path / "taken.jsonl").read_text().splitlines()]
    (run,) = {note["run"] for note in notes}
    assert len({note["id"] for note in notes}) == 6, "an instance was handed to two tests"
    starts = len((inner.path / "starts").read_text()) if backend == "process" else containers_created(run, t0)
    assert starts == 6, f"{starts} instances started for 6 tests"
    assert run_resources(run) == []


def gate_spec(name: str, gate: Path, **fields: object) -> ServiceSpec:
    """A process that says it started, then is ready once `gate` exists."""
    code = textwrap.dedent(
        f"""
        import pathlib, time
        pathlib.Path({str(gate.parent / (name + ".started"))!r}).touch()
        while not pathlib.Path({str(gate)!r}).exists():
            time.sleep(0.01)
        print("ready", flush=True)
        time.sleep(3600)
        """
    )
    return ServiceSpec(name=name, command=("{python}", "-c", code), ready=LogCheck("^ready$"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("waits", [False, True], ids=["side by side", "one after the other"])
def test_a_dependent_starts_before_its_dependency_is_ready_only_if_its_spec_allows(
    tmp_path: Path, waits: bool
) -> None:
    gate = tmp_path / "gate"
    base = gate_spec("base", gate)
    top = ServiceSpec(
        name="top",
        command=(
            "{python}",
            "-c",
            f"import pathlib, time; pathlib.Path({str(tmp_path / 'top.started')!r}).touch(); "
            "print('up', flush=True); time.sleep(3600)",
        ),
        ready=LogCheck("^up$"),
        depends_on=(base,),
        wait_for_dependencies=waits,
    )
    manager = Manager(Settings(backend="process"))
    started: list[object] = []
    starter = threading.Thread(target=lambda: started.append(manager.start(top)))
    deadline = time.monotonic() + 30
    try:
        starter.start()
        # "base" is not ready until the gate opens. Side by side, "top" starts meanwhile (the gate
        # opens only once it has); one after the other, it starts only after the gate opened.
        awaited = tmp_path / ("base.started" if waits else "top.started")
        while not awaited.exists():
            assert time.monotonic() < deadline, f"{awaited.name} never appeared"
            time.sleep(0.01)
        # (Whether "top" started while the gate was still closed: file times are too coarse to say.)
        top_before_gate = (tmp_path / "top.started").exists()
        gate.touch()
        starter.join(30)
        assert started, "the graph did not start"
        assert top_before_gate != waits
    finally:
        gate.touch()
        starter.join(30)
        manager.close()
