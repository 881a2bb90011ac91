"""Services bound to state of their own: web_server1 on its own database, web_server2 with its
own cache prefix, and Redis indexes. A never-used instance per test, started ahead."""

import json

import httpx
import pytest

COPIES = 2


@pytest.mark.parametrize("n", range(COPIES))
def test_web_server1_lists_exactly_the_dogs_of_its_test(web_server1, db, n):
    names = [f"web-{n}-{i}" for i in range(n + 1)]
    for name in names:
        assert httpx.post(f"{web_server1.url}/dogs", json={"name": name, "age": 1}).status_code == 201
    dogs = httpx.get(f"{web_server1.url}/dogs").json()
    assert [(dog["id"], dog["name"]) for dog in dogs] == list(enumerate(names, start=1))
    # The same database, seen directly: the paired service and the test share it, no one else.
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM dogs").fetchone() == (len(names),)


def test_a_test_that_takes_its_database_first_still_gets_web_server1_on_it(db, web_server1):
    # (Here the service starts when the test asks for it: no pair was made ahead for this order.)
    with db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO dogs (name, breed, age) VALUES ('Direct', 'labrador', 4)")
    assert [dog["name"] for dog in httpx.get(f"{web_server1.url}/dogs").json()] == ["Direct"]


@pytest.mark.parametrize("n", range(COPIES))
def test_web_server2_serves_cards_from_its_own_cache_only(web_server2, cards, n):
    client = cards.connect()
    # (A prefix isolates only the keys under it: other tests' prefixes share this database.)
    assert client.keys(cards.key("*")) == []
    card = {"id": 7, "title": f"card of test {n}"}
    client.set(cards.key("card:7"), json.dumps(card), px=60_000)
    assert httpx.get(f"{web_server2.url}/dogs/7/card").json() == card
    # No other test's card under another id: without one here, web_server2 asks its (absent) upstream.
    assert httpx.get(f"{web_server2.url}/dogs/8/card").status_code == 503


@pytest.mark.parametrize("n", range(30))
def test_a_redis_index_of_its_own(cache, n):
    client = cache.connect()
    assert client.dbsize() == 0
    client.mset({f"key-{i}": n for i in range(n + 1)})
    assert client.dbsize() == n + 1
    assert client.incr("counter") == 1
