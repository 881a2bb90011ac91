"""A Redis database index, or key prefix, per test: never shared, emptied after, freed when its holder dies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from testinfra import Manager
from testinfra import StateTimeoutError
from testinfra._child import child_env
from testinfra._owner import Owner
from testinfra._redis import RedisAllocator
from testinfra._redis import RedisServer
from testinfra.conftest import BACKENDS
from testinfra.conftest import STATE_ADDRESSES
from testinfra.conftest import image_or_address
from testinfra.conftest import report
from testinfra.conftest import run_resources
from testinfra.conftest import start_redis

ME = Owner.me()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture(scope="module")
def redis(state_manager: Manager, backend: str, pytestconfig: pytest.Config) -> RedisServer:
    return start_redis(state_manager, backend, pytestconfig)


@pytest.fixture(scope="module")
def small_redis(state_manager: Manager, backend: str, pytestconfig: pytest.Config) -> RedisServer:
    """Two indexes to hand out (1 and 2): database 0 holds the leases."""
    return start_redis(state_manager, backend, pytestconfig, databases=3)


@pytest.fixture
def allocator(redis: RedisServer) -> Iterator[RedisAllocator]:
    allocator = RedisAllocator(redis)
    yield allocator
    allocator.close()


HOLDER = """
import json, sys
from testinfra._redis import RedisAllocator, RedisServer
server = RedisServer(**json.loads(sys.argv[1]))
allocator = RedisAllocator(server)
held = [allocator.acquire("index", 60) for _ in range(int(sys.argv[2]))]
for database in held:
    client = database.connect()
    empty = client.dbsize() == 0
    client.set("mine", "x")
    print(json.dumps([database.db, empty]), flush=True)
sys.stdin.read()  # hold them until told (or killed)
for database in held:
    allocator.release(database)
allocator.close()
"""


def server_json(server: RedisServer) -> str:
    return json.dumps({field: getattr(server, field) for field in RedisServer.__dataclass_fields__})


def holder(server: RedisServer, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, server_json(server), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )


def test_no_two_processes_hold_the_same_index(redis: RedisServer) -> None:
    children = [holder(redis, 4) for _ in range(3)]
    try:
        taken = []
        for child in children:
            assert child.stdout is not None
            taken += [json.loads(child.stdout.readline()) for _ in range(4)]
    finally:
        for child in children:
            child.communicate(timeout=60)
    assert len({index for index, _ in taken}) == 12
    assert all(empty for _, empty in taken), "an index was handed over with another test's keys"
    with redis.client() as client:
        assert not list(client.scan_iter(match="testinfra:lease:*")), "a lease outlived its holder"


def test_an_index_is_empty_when_taken_and_emptied_when_given_back(allocator: RedisAllocator) -> None:
    first = allocator.acquire("index", 10)
    client = first.connect()
    client.set("k", "v")
    allocator.release(first)
    second = allocator.acquire("index", 10)
    assert second.db == first.db  # the lowest free index again
    assert second.connect().dbsize() == 0
    allocator.release(second)


def test_a_prefix_is_private_and_its_keys_go_with_it(allocator: RedisAllocator) -> None:
    a, b = allocator.acquire("prefix", 10), allocator.acquire("prefix", 10)
    assert a.prefix != b.prefix and a.db == b.db == 0
    client = a.connect()
    client.set(a.key("card:1"), "a")
    client.set(b.key("card:1"), "b")
    allocator.release(a)
    assert client.get(b.key("card:1")) == b"b"
    assert not list(client.scan_iter(match=f"{a.prefix}*"))
    allocator.release(b)


def test_an_index_held_by_a_killed_process_is_taken_over_and_emptied(
    small_redis: RedisServer, backend: str
) -> None:
    child = holder(small_redis, 2)  # both indexes
    try:
        assert child.stdout is not None
        held = [json.loads(child.stdout.readline())[0] for _ in range(2)]
        allocator = RedisAllocator(small_redis)
        try:
            with pytest.raises(StateTimeoutError, match="stayed in use"):
                allocator.acquire("index", 0.3)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            t0 = time.monotonic()
            database = allocator.acquire("index", 10)
            seconds = time.monotonic() - t0
            assert database.db in held
            assert database.connect().get("mine") is None, "the dead holder's keys were handed over"
            allocator.release(database)
        finally:
            allocator.close()
    finally:
        child.communicate(timeout=60)
    report("SIGKILL holding a Redis index", backend, seconds)


def test_when_every_index_is_held_a_test_waits_then_gets_a_clear_error(
    small_redis: RedisServer, backend: str
) -> None:
    allocator = RedisAllocator(small_redis)
    try:
        held = [allocator.acquire("index", 10), allocator.acquire("index", 10)]
        t0 = time.monotonic()
        with pytest.raises(StateTimeoutError, match=r"--databases"):
            allocator.acquire("index", 0.5)
        assert 0.5 <= time.monotonic() - t0 < 10
        for database in held:
            allocator.release(database)
    finally:
        allocator.close()
    report("Redis indexes exhausted: clear error", backend)


def test_keys_under_a_dead_owners_prefix_are_swept(redis: RedisServer) -> None:
    dead = Owner(ME.pid, ME.start + 1, ME.pidns, ME.boot)
    theirs = RedisAllocator(redis, dead)
    mine = RedisAllocator(redis)
    try:
        left = theirs.acquire("prefix", 10)
        kept = mine.acquire("prefix", 10)
        client = left.connect()
        client.set(left.key("a"), "1")
        client.set(kept.key("a"), "1")
        assert mine.sweep() == 1
        assert client.get(left.key("a")) is None
        assert client.get(kept.key("a")) == b"1"
        mine.release(kept)
    finally:
        theirs.close()
        mine.close()


ON_HOST = """
import pytest
from testinfra import ServiceSpec
from testinfra import TcpCheck
from testinfra import paired_service_fixture
from testinfra import redis_fixture
from testinfra import service_fixture
from testinfra.conftest import redis_spec

REDIS = ServiceSpec(
    name="redis",
    image=redis_spec(IMAGE).image,
    args=("--bind", "{host}", "--port", "{port}"),
    host_network=True,
    ready=TcpCheck(send=b"PING\\r\\n", expect=b"+PONG\\r\\n"),
)
redis = service_fixture(REDIS, scope="session")
cache = redis_fixture("redis")
# Never started: refused before, since a bridged container cannot reach the host's 127.0.0.1.
bridged = paired_service_fixture(ServiceSpec(name="web", image="labrador/unused:1"), cache, env={"URL": "{url}"})

def test_the_helpers_reach_a_server_on_the_hosts_network(redis, cache, testinfra_manager):
    open("run", "w").write(testinfra_manager.run_id)
    assert redis.peer.host == "127.0.0.1"
    client = cache.connect()
    client.set(cache.key("k"), "v")
    assert client.get(cache.key("k")) == b"v"

def test_a_bridged_service_paired_with_it_is_refused(bridged):
    pass
"""


@pytest.mark.testinfra_docker
def test_a_redis_on_the_hosts_network_serves_tests_and_refuses_bridged_pairs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.setenv("TESTINFRA_BACKEND", "docker")
    image = image_or_address(STATE_ADDRESSES["redis"], pytestconfig, "docker")
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    pytester.makepyfile(test_on_host=f"IMAGE = {image!r}\n" + ON_HOST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "test_on_host.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*SpecError: 'web' would run in a container on a network of its own*"])
    assert run_resources((pytester.path / "run").read_text()) == []
