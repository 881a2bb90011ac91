"""Separated resources: several servers at once, none on a fixed port, none sharing state."""

import socket

import httpx

from testinfra import service_fixture
from tests.services.web_server1 import WEB_SERVER1
from tests.services.web_server2 import WEB_SERVER2

web_server2 = service_fixture(WEB_SERVER2, scope="module")
# A second, independent web_server1 next to the one web_server2 depends on.
other_web_server1 = service_fixture(WEB_SERVER1, scope="module")


def test_every_server_has_its_own_port(web_server2, other_web_server1):
    web_server1 = web_server2.dependency("web_server1")
    ports = {web_server1.port, web_server2.port, other_web_server1.port}
    assert len(ports) == 3
    for server in (web_server1, web_server2, other_web_server1):
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_instances_do_not_share_state(web_server2, other_web_server1):
    web_server1 = web_server2.dependency("web_server1")
    created = httpx.post(f"{other_web_server1.url}/dogs", json={"name": "Solo", "age": 4}).json()
    assert httpx.get(f"{other_web_server1.url}/dogs/{created['id']}").status_code == 200
    names = {dog["name"] for dog in httpx.get(f"{web_server1.url}/dogs").json()}
    assert "Solo" not in names


def test_web_server2_reaches_its_own_web_server1(web_server2):
    web_server1 = web_server2.dependency("web_server1")
    httpx.post(f"{web_server1.url}/dogs", json={"name": "Linked", "age": 2})
    assert "Linked" in httpx.get(f"{web_server2.url}/kennel").json()["names"]
    # web_server2 was told the address at which its peer answers on their shared network.
    assert httpx.get(f"{web_server2.url}/health").json()["upstream_url"] == web_server1.peer.url


def test_port_factory_gives_distinct_reserved_ports(tcp_port_factory):
    # The unused_tcp_port_factory use case: ports for something that binds by number itself.
    ports = [tcp_port_factory() for _ in range(3)]
    assert len(set(ports)) == 3
    listeners = [socket.create_server(("127.0.0.1", port)) for port in ports]
    for listener in listeners:
        listener.close()
