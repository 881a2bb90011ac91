"""web_server1 over HTTP, with either store: same statuses, same bodies; and how a start with a
database fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from labrador.web_server1 import migrations
from labrador.web_server1.app import create_app
from labrador.web_server1.migrations import Migration
from labrador.web_server1.postgres import DatabaseStartError
from labrador.web_server1.settings import Settings


@pytest.fixture(params=["memory", "postgres"])
def settings(request: pytest.FixtureRequest) -> Settings:
    url = request.getfixturevalue("database_url") if request.param == "postgres" else None
    return Settings(database_url=url, max_dogs=3)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:  # runs the lifespan: connect, migrate, pool
        yield client


def test_create_get_list_delete(client: TestClient) -> None:
    created = client.post("/dogs", json={"name": "Rex", "age": 3})
    assert created.status_code == 201
    assert created.json() == {"id": 1, "name": "Rex", "breed": "labrador", "age": 3}
    assert client.get("/dogs/1").json() == created.json()
    assert client.post("/dogs", json={"name": "Ada", "breed": "poodle", "age": 1}).json()["id"] == 2
    assert [dog["name"] for dog in client.get("/dogs").json()] == ["Rex", "Ada"]
    assert client.delete("/dogs/1").status_code == 204
    assert client.get("/dogs/1").status_code == 404
    assert [dog["id"] for dog in client.get("/dogs").json()] == [2]


def test_unknown_dog_is_404_with_a_detail(client: TestClient) -> None:
    for response in (client.get("/dogs/999999"), client.delete("/dogs/999999")):
        assert response.status_code == 404
        assert response.json() == {"detail": "no dog with id 999999"}


def test_full_registry_is_409(client: TestClient) -> None:
    for name in ("A", "B", "C"):
        assert client.post("/dogs", json={"name": name, "age": 1}).status_code == 201
    response = client.post("/dogs", json={"name": "D", "age": 1})
    assert response.status_code == 409
    assert response.json() == {"detail": "the registry is full (3 dogs)"}


def test_invalid_input_is_422_and_stores_nothing(client: TestClient) -> None:
    response = client.post("/dogs", json={"name": "", "age": -1})
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {("body", "name"), ("body", "age")}
    assert client.get("/dogs").json() == []


def test_two_instances_on_one_database_share_the_dogs(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        dog = first.post("/dogs", json={"name": "Shared", "age": 4}).json()
        assert second.get(f"/dogs/{dog['id']}").json() == dog


def test_a_database_that_is_down_fails_the_start_clearly(tmp_path: Path) -> None:
    # A socket directory where no server listens: the connection is refused at once.
    url = f"postgresql://lab:secret@/dogs?host={tmp_path}&port=5432"
    app = create_app(Settings(database_url=url))
    with pytest.raises(DatabaseStartError, match=r"cannot reach its database lab@.*:5432/dogs: .*") as caught:
        with TestClient(app):
            pass
    assert "secret" not in str(caught.value)


def test_a_failing_migration_fails_the_start_and_names_the_file(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = [*migrations.files(), Migration("0999_broken", "ALTER TABLE nosuchtable ADD COLUMN x int")]
    monkeypatch.setattr(migrations, "files", lambda: bad)
    app = create_app(Settings(database_url=database_url))
    with pytest.raises(
        DatabaseStartError, match='0999_broken.sql failed: relation "nosuchtable" does not exist'
    ):
        with TestClient(app):
            pass
    with psycopg.connect(database_url) as conn:  # nothing half-applied
        assert conn.execute("SELECT to_regclass('dogs')").fetchone() == (None,)
