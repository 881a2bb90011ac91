"""Containers on the host's network: no namespace, bridge or proxy each, at ports testinfra reserves."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import docker
import httpx
import pytest

from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import ServiceStartError
from testinfra import Settings
from testinfra._ports import PortReservation
from testinfra._ports import held_port_locks
from testinfra._ports import reserve_port
from testinfra._statedir import StateDir
from testinfra.conftest import ADDRESSES
from testinfra.conftest import image_or_address
from testinfra.conftest import run_resources

pytestmark = pytest.mark.testinfra_docker

LISTEN = ("--host", "{host}", "--port", "{port}")


def web_specs(config: pytest.Config) -> ServiceSpec:
    images = {name: image_or_address(address, config, "docker") for name, address in ADDRESSES.items()}
    ws1 = ServiceSpec(name="web_server1", image=images["web_server1"], args=LISTEN, host_network=True)
    return ServiceSpec(
        name="web_server2",
        image=images["web_server2"],
        args=LISTEN,
        host_network=True,
        depends_on=(ws1,),
        env={"WEB_SERVER2_UPSTREAM_URL": "{web_server1.url}"},
    )


@pytest.fixture
def manager() -> Iterator[Manager]:
    manager = Manager(Settings(backend="docker"))
    try:
        yield manager
    finally:
        manager.close()


def network_mode(container: str) -> str:
    client = docker.from_env()
    try:
        mode: str = client.containers.get(container).attrs["HostConfig"]["NetworkMode"]
        return mode
    finally:
        client.close()


def held_ports() -> set[int]:
    return set(held_port_locks(StateDir(Settings.from_env().state_dir)))


def test_a_graph_on_the_hosts_network_makes_no_network_and_frees_its_ports(
    manager: Manager, pytestconfig: pytest.Config
) -> None:
    web_server2 = manager.start(web_specs(pytestconfig))
    web_server1 = web_server2.dependency("web_server1")
    assert {network_mode(s.resource_id) for s in (web_server1, web_server2)} == {"host"}
    assert [r.kind for r in run_resources(manager.run_id)] == ["container", "container"]
    ports = {web_server1.port, web_server2.port}
    assert ports <= held_ports(), "the ports the containers listen on are not reserved"

    httpx.post(f"{web_server1.url}/dogs", json={"name": "Rex", "age": 2}).raise_for_status()
    assert httpx.get(f"{web_server2.url}/kennel").json()["names"] == ["Rex"]
    # Started again, it listens on the same reserved port, where web_server2 still finds it.
    web_server1.restart()
    httpx.post(f"{web_server1.url}/dogs", json={"name": "Ada", "age": 2}).raise_for_status()
    assert httpx.get(f"{web_server2.url}/kennel").json()["names"] == ["Ada"]

    manager.close()
    assert run_resources(manager.run_id) == []
    assert not ports & held_ports(), "a removed container's port is still reserved"


def test_where_the_engine_does_not_share_our_network_the_graph_runs_bridged(
    manager: Manager, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "testinfra._backends.docker.host_network_problem", lambda client: "the engine runs on host 'vm'"
    )
    web_server2 = manager.start(web_specs(pytestconfig))
    web_server1 = web_server2.dependency("web_server1")
    assert not web_server2.spec.host_network
    assert {network_mode(s.resource_id) for s in (web_server1, web_server2)} == {
        manager._private_networks["docker"]
    }
    # Their args' {host} and {port} followed: 0.0.0.0 and the container port, published.
    assert "Uvicorn running on http://0.0.0.0:80" in web_server2.logs()
    httpx.post(f"{web_server1.url}/dogs", json={"name": "Bo", "age": 1}).raise_for_status()
    assert httpx.get(f"{web_server2.url}/kennel").json()["names"] == ["Bo"]


SHARED_ON_HOST = """
import json
import os
import httpx
import pytest
from specs import IMAGES
from testinfra import ServiceSpec
from testinfra import service_fixture

LISTEN = ("--host", "{host}", "--port", "{port}")
WS1 = ServiceSpec(name="web_server1", image=IMAGES["web_server1"], args=LISTEN, host_network=True)
WS2 = ServiceSpec(
    name="web_server2", image=IMAGES["web_server2"], args=LISTEN, host_network=True, depends_on=(WS1,),
    env={"WEB_SERVER2_UPSTREAM_URL": "{web_server1.url}"},
)
web_server2 = service_fixture(WS2, scope="shared")

@pytest.mark.parametrize("n", range(4))
def test_uses_it(web_server2, n, testinfra_manager):
    assert httpx.get(web_server2.url + "/kennel").status_code == 200
    note = {"url": web_server2.url, "worker": os.environ["PYTEST_XDIST_WORKER"], "run": testinfra_manager.run_id}
    with open("seen.jsonl", "a") as notes:
        notes.write(json.dumps(note) + "\\n")
"""


@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.testinfra_docker)])
def test_workers_that_attach_to_a_shared_graph_on_the_hosts_network_find_its_port(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(test_shared=SHARED_ON_HOST)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "load")
    result.assert_outcomes(passed=4)
    notes = [json.loads(line) for line in (inner.path / "seen.jsonl").read_text().splitlines()]
    assert len({note["worker"] for note in notes}) == 2, "one worker ran every test: nothing attached"
    assert len({note["url"] for note in notes}) == 1
    assert run_resources(notes[0]["run"]) == []


def test_a_neighbour_on_the_reserved_port_fails_the_start_with_the_services_log(
    manager: Manager, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process outside testinfra binds the port between its reservation and the service's bind.
    neighbour = socket.socket()
    taken: list[PortReservation] = []

    def reserve_then_lose(*args: object) -> PortReservation:
        reservation = reserve_port(*args)  # type: ignore[arg-type]
        neighbour.bind(("127.0.0.1", reservation.port))
        neighbour.listen()
        taken.append(reservation)
        return reservation

    monkeypatch.setattr("testinfra._backends.docker.reserve_port", reserve_then_lose)
    web_server1 = web_specs(pytestconfig).depends_on[0]
    with neighbour, pytest.raises(ServiceStartError, match="exited before it was ready") as info:
        manager.start(web_server1)
    assert "address already in use" in str(info.value)
    assert run_resources(manager.run_id) == []
    assert not taken[0].held
