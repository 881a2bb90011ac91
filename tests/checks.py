"""The checks every style of the progression runs against web_server1, so styles compare fairly."""

from __future__ import annotations

import httpx


def check_health(url: str) -> None:
    response = httpx.get(f"{url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "web_server1"}


def check_create_and_get(url: str) -> None:
    created = httpx.post(f"{url}/dogs", json={"name": "Rex", "breed": "labrador", "age": 3})
    assert created.status_code == 201, created.text
    dog = created.json()
    assert dog["name"] == "Rex"
    fetched = httpx.get(f"{url}/dogs/{dog['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == dog


def check_list_contains_created(url: str) -> None:
    names = {"Ada", "Bo"}
    for name in names:
        assert httpx.post(f"{url}/dogs", json={"name": name, "age": 1}).status_code == 201
    listed = {dog["name"] for dog in httpx.get(f"{url}/dogs").json()}
    # Other tests may share this server (wider scopes): check inclusion, not equality.
    assert names <= listed


def check_delete(url: str) -> None:
    dog_id = httpx.post(f"{url}/dogs", json={"name": "Gone", "age": 2}).json()["id"]
    assert httpx.delete(f"{url}/dogs/{dog_id}").status_code == 204
    assert httpx.get(f"{url}/dogs/{dog_id}").status_code == 404


def check_rejects_invalid_input(url: str) -> None:
    response = httpx.post(f"{url}/dogs", json={"name": "", "age": -1})
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert fields == {("body", "name"), ("body", "age")}


def check_unknown_dog_is_404(url: str) -> None:
    response = httpx.get(f"{url}/dogs/999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "no dog with id 999999"}


ALL_CHECKS = [
    check_health,
    check_create_and_get,
    check_list_contains_created,
    check_delete,
    check_rejects_invalid_input,
    check_unknown_dog_is_404,
]
