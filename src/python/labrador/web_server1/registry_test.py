"""The Registry contract, checked against both stores: in memory, and PostgreSQL (a real server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labrador.web_server1.models import DogIn
from labrador.web_server1.registry import DogNotFoundError
from labrador.web_server1.registry import InMemoryRegistry
from labrador.web_server1.registry import Registry
from labrador.web_server1.registry import RegistryFullError
from labrador.web_server1.settings import Settings

REX = DogIn(name="Rex", breed="labrador", age=3)
ADA = DogIn(name="Ada", breed="poodle", age=1)
BIG = 1000


@pytest.fixture(params=["memory", "postgres"])
def registry(request: pytest.FixtureRequest) -> Iterator[Registry]:
    if request.param == "memory":
        yield InMemoryRegistry()
        return
    from labrador.web_server1.postgres import open_registry

    store = open_registry(Settings(database_url=request.getfixturevalue("database_url")))
    try:
        yield store
    finally:
        store.close()


def test_ids_count_from_one(registry: Registry) -> None:
    assert [registry.add(dog, BIG).id for dog in (REX, ADA)] == [1, 2]


def test_get_returns_what_add_stored(registry: Registry) -> None:
    created = registry.add(REX, BIG)
    assert created.model_dump() == {"id": created.id, "name": "Rex", "breed": "labrador", "age": 3}
    assert registry.get(created.id) == created


def test_list_is_in_id_order(registry: Registry) -> None:
    assert registry.list() == []
    added = [registry.add(dog, BIG) for dog in (REX, ADA, REX)]
    assert registry.list() == added


def test_ids_are_not_reused_after_delete(registry: Registry) -> None:
    first = registry.add(REX, BIG)
    registry.delete(first.id)
    assert registry.add(ADA, BIG).id == first.id + 1


def test_unknown_ids_are_not_found(registry: Registry) -> None:
    with pytest.raises(DogNotFoundError, match="^no dog with id 42$"):
        registry.get(42)
    with pytest.raises(DogNotFoundError, match="^no dog with id 42$"):
        registry.delete(42)
    created = registry.add(REX, BIG)
    registry.delete(created.id)
    with pytest.raises(DogNotFoundError):
        registry.delete(created.id)


def test_ids_beyond_any_integer_column_are_not_found(registry: Registry) -> None:
    with pytest.raises(DogNotFoundError):
        registry.get(2**70)


def test_full_registry_refuses_more_until_one_leaves(registry: Registry) -> None:
    kept = registry.add(REX, 2)
    registry.add(ADA, 2)
    with pytest.raises(RegistryFullError, match=r"^the registry is full \(2 dogs\)$"):
        registry.add(REX, 2)
    registry.delete(kept.id)
    assert registry.add(REX, 2).name == "Rex"
    assert len(registry.list()) == 2
