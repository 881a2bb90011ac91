"""Reset actions: a service that can forget its state does so between tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from testinfra import CallableReset
from testinfra import CommandReset
from testinfra import HttpCheck
from testinfra import HttpReset
from testinfra import Manager
from testinfra import ResetError
from testinfra import Service
from testinfra import ServiceSpec
from testinfra import Settings
from testinfra import SpecError
from testinfra._child import child_env
from testinfra.conftest import BACKENDS
from testinfra.conftest import image_or_address
from testinfra.conftest import redis_spec

# A counter over HTTP: POST /inc, GET /count, POST /reset (or 500 once /break was posted).
COUNTER = """
import http.server, sys
count, broken = 0, False
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(200, str(count).encode())
    def do_POST(self):
        global count, broken
        if self.path == "/inc":
            count += 1
        elif self.path == "/break":
            broken = True
        elif self.path == "/reset":
            if broken:
                print("reset refused: broken", flush=True)
                return self.answer(500, b"broken")
            count = 0
        self.answer(204)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
COUNTER_SPEC = ServiceSpec(
    name="counter",
    command=("{python}", "-c", COUNTER, "{host}", "{port}"),
    ready=HttpCheck(path="/count"),
    reset=HttpReset("/reset"),
)


def count(service: Service) -> int:
    import httpx

    return int(httpx.get(f"{service.url}/count").text)


@pytest.fixture
def manager() -> Iterator[Manager]:
    manager = Manager(Settings(backend="process"))
    yield manager
    manager.close()


def test_an_http_reset_brings_the_service_back_and_a_failing_one_says_why(manager: Manager) -> None:
    import httpx

    counter = manager.start(COUNTER_SPEC)
    httpx.post(f"{counter.url}/inc")
    assert count(counter) == 1
    counter.reset()
    assert count(counter) == 0
    httpx.post(f"{counter.url}/break")
    with pytest.raises(ResetError, match=r"answered 500, not 200 or 204") as failure:
        counter.reset()
    assert "reset refused: broken" in str(failure.value)  # its log lines


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_command_reset_runs_beside_the_service_on_either_backend(
    backend: str, pytestconfig: pytest.Config
) -> None:
    image = image_or_address("docker/redis:image", pytestconfig, backend)
    flush = CommandReset(("redis-cli", "-h", "{host}", "-p", "{port}", "FLUSHALL"))
    spec = replace(redis_spec(image), reset=flush)
    manager = Manager(Settings(backend=backend))  # type: ignore[arg-type]
    try:
        service = manager.start(spec)
        with redis.Redis(host=service.host, port=service.port) as client:
            client.set("k", "v")
            service.reset()
            assert client.dbsize() == 0
    finally:
        manager.close()


def test_a_callable_reset_gets_the_service(manager: Manager) -> None:
    import httpx

    seen: list[Service] = []

    def reset(service: Service) -> None:
        seen.append(service)
        httpx.post(f"{service.url}/reset").raise_for_status()

    counter = manager.start(replace(COUNTER_SPEC, reset=CallableReset(reset)))
    httpx.post(f"{counter.url}/inc")
    counter.reset()
    assert seen == [counter] and count(counter) == 0


def test_a_service_without_a_reset_cannot_be_reset_and_bad_actions_are_refused(manager: Manager) -> None:
    plain = manager.start(replace(COUNTER_SPEC, reset=None))
    with pytest.raises(ResetError, match="declares no reset action"):
        plain.reset()
    with pytest.raises(SpecError, match="is not a reset action"):
        ServiceSpec(name="x", command=("true",), reset=object())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="must start with '/'"):
        HttpReset("reset")
    with pytest.raises(SpecError, match="non-empty sequence"):
        CommandReset("redis-cli FLUSHALL")  # type: ignore[arg-type]


RESET_TESTS = """
import httpx
import pytest
from testinfra import ServiceSpec, service_fixture, reset_fixture
from specs import COUNTER_SPEC

session_counter = service_fixture(COUNTER_SPEC, scope="session")
counter = reset_fixture("session_counter")
shared_counter = service_fixture(COUNTER_SPEC, scope="shared", name="shared_counter")
fresh_shared = reset_fixture("shared_counter")

@pytest.mark.parametrize("n", range(3))
def test_each_starts_from_zero(counter, n):
    assert httpx.get(counter.url + "/count").text == "0"
    httpx.post(counter.url + "/inc")

def test_a_shared_service_is_not_reset_per_test(fresh_shared):
    pass
"""


def test_reset_fixture_resets_before_each_test_and_refuses_a_shared_service(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.setenv("TESTINFRA_BACKEND", "process")
    monkeypatch.delenv("TESTINFRA_REQUIRE_DOCKER", raising=False)
    pytester.makepyfile(specs="from testinfra.reset_test import COUNTER_SPEC\n")
    pytester.makeconftest('pytest_plugins = ["testinfra.plugin"]')
    pytester.makepyfile(test_reset=RESET_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_reset.py")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*SharedServiceError: cannot reset the shared service 'counter' before each test*"]
    )
