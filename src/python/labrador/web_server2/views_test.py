"""web_server2's card route with and without the Redis cache, against a fake web_server1."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import HTTPException
from fastapi.testclient import TestClient

from labrador.web_server2.app import create_app
from labrador.web_server2.settings import Settings
from labrador.web_server2.views import get_upstream

REX = {"id": 7, "name": "Rex", "breed": "labrador", "age": 1}
REX_CARD = {"id": 7, "title": "Rex (labrador, 1 year)"}


class FakeUpstream:
    """web_server1 as web_server2 sees it; counts the calls."""

    def __init__(self) -> None:
        self.dogs = {REX["id"]: REX}
        self.calls: list[str] = []

    async def get_json(self, path: str) -> Any:
        self.calls.append(path)
        dog_id = int(path.rsplit("/", 1)[1])
        if dog_id not in self.dogs:
            raise HTTPException(404, f"no dog with id {dog_id}")
        return self.dogs[dog_id]


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


def client_for(settings: Settings, upstream: FakeUpstream) -> TestClient:
    app = create_app(settings)
    app.dependency_overrides[get_upstream] = lambda: upstream
    return TestClient(app)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def cached(redis_url: str, prefix: str, upstream: FakeUpstream) -> Iterator[TestClient]:
    with client_for(Settings(redis_url=redis_url, redis_prefix=prefix, card_ttl=30), upstream) as client:
        yield client


def test_without_a_cache_every_card_asks_web_server1(upstream: FakeUpstream) -> None:
    with client_for(Settings(redis_url=None), upstream) as client:
        for _ in range(2):
            assert client.get("/dogs/7/card").json() == REX_CARD
    assert upstream.calls == ["/dogs/7", "/dogs/7"]


def test_a_cache_hit_does_not_call_web_server1(cached: TestClient, upstream: FakeUpstream) -> None:
    assert cached.get("/dogs/7/card").json() == REX_CARD
    upstream.dogs.clear()  # web_server1 would now say 404: the card must come from the cache
    assert cached.get("/dogs/7/card").json() == REX_CARD
    assert upstream.calls == ["/dogs/7"]


def test_cards_are_stored_under_the_prefix_with_the_ttl(
    cached: TestClient, redis_url: str, prefix: str
) -> None:
    cached.get("/dogs/7/card")
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys(f"{prefix}*") == [f"{prefix}card:7".encode()]
        assert 0 < client.pttl(f"{prefix}card:7") <= 30_000


def test_prefixes_keep_caches_apart(redis_url: str, upstream: FakeUpstream) -> None:
    for prefix in ("a-" + uuid.uuid4().hex[:8], "b-" + uuid.uuid4().hex[:8]):
        with client_for(Settings(redis_url=redis_url, redis_prefix=prefix), upstream) as client:
            assert client.get("/dogs/7/card").json() == REX_CARD
    assert upstream.calls == ["/dogs/7", "/dogs/7"]


def test_a_missing_dog_is_not_cached(cached: TestClient, upstream: FakeUpstream) -> None:
    for _ in range(2):
        assert cached.get("/dogs/8/card").status_code == 404
    assert upstream.calls == ["/dogs/8", "/dogs/8"]


def test_a_malformed_cache_entry_is_ignored(
    cached: TestClient, upstream: FakeUpstream, redis_url: str, prefix: str
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{prefix}card:7", b"not a card")
    assert cached.get("/dogs/7/card").json() == REX_CARD
    assert upstream.calls == ["/dogs/7"]


def test_redis_down_does_not_break_cards(
    tmp_path: Path, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"unix://{tmp_path}/no-redis-here.sock"
    with caplog.at_level(logging.WARNING), client_for(Settings(redis_url=down), upstream) as client:
        for _ in range(2):
            response = client.get("/dogs/7/card")
            assert response.status_code == 200
            assert response.json() == REX_CARD
    assert upstream.calls == ["/dogs/7", "/dogs/7"]
    assert "card cache: cannot read" in caplog.text
    assert "card cache: cannot store" in caplog.text
