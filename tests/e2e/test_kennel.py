"""End to end: web_server2's views over web_server1's data, and how it behaves when web_server1 fails."""

import httpx
import pytest

from testinfra import service_fixture
from tests.services.web_server2 import WEB_SERVER2

web_server2 = service_fixture(WEB_SERVER2)


@pytest.fixture
def web_server1(web_server2):
    return web_server2.dependency("web_server1")


def test_kennel_reflects_web_server1(web_server1, web_server2):
    assert httpx.get(f"{web_server2.url}/kennel").json() == {"count": 0, "names": []}
    for name in ("Rex", "Ada"):
        assert httpx.post(f"{web_server1.url}/dogs", json={"name": name, "age": 2}).status_code == 201
    assert httpx.get(f"{web_server2.url}/kennel").json() == {"count": 2, "names": ["Ada", "Rex"]}


def test_dog_card(web_server1, web_server2):
    dog = httpx.post(f"{web_server1.url}/dogs", json={"name": "Bo", "breed": "poodle", "age": 1}).json()
    card = httpx.get(f"{web_server2.url}/dogs/{dog['id']}/card")
    assert card.json() == {"id": dog["id"], "title": "Bo (poodle, 1 year)"}


def test_unknown_dog_card_is_404(web_server2):
    response = httpx.get(f"{web_server2.url}/dogs/4242/card")
    assert response.status_code == 404
    assert response.json() == {"detail": "no dog with id 4242"}


def test_invalid_dog_id_is_422(web_server2):
    assert httpx.get(f"{web_server2.url}/dogs/0/card").status_code == 422


def test_web_server1_down_is_503_and_recovers_after_restart(web_server1, web_server2):
    web_server1.kill()
    assert web_server1.exit_code() is not None
    response = httpx.get(f"{web_server2.url}/kennel")
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]

    web_server1.restart()
    # A restarted web_server1 starts empty, at the same address for its peers.
    assert httpx.get(f"{web_server2.url}/kennel").json() == {"count": 0, "names": []}
    httpx.post(f"{web_server1.url}/dogs", json={"name": "Back", "age": 5})
    assert httpx.get(f"{web_server2.url}/kennel").json()["names"] == ["Back"]
