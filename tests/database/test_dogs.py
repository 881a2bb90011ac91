"""The right way: a database per test. Each test asserts what only holds if no other test ever
touches its database: it is empty and migrated, ids start at 1, its rows are the only rows, its
schema changes stay its own. Many copies of each run at once under `-n auto`, in shuffled order."""

import pytest

from labrador.web_server1.models import DogIn
from labrador.web_server1.postgres import open_registry
from labrador.web_server1.registry import RegistryFullError
from labrador.web_server1.settings import Settings

# Many copies of each, shuffled, over several workers: a leak between tests cannot hide.
COPIES = 100


@pytest.mark.parametrize("n", range(COPIES))
def test_a_new_database_is_migrated_and_empty(db, n):
    with db.connect() as conn:
        assert [row[0] for row in conn.execute("SELECT version FROM schema_migrations")] == ["0001_dogs"]
        assert conn.execute("SELECT count(*) FROM dogs").fetchone() == (0,)


@pytest.mark.parametrize("n", range(COPIES))
def test_the_rows_a_test_writes_are_the_only_rows(db, n):
    names = [f"dog-{n}-{i}" for i in range(n % 5 + 1)]
    with db.connect(autocommit=True) as conn:
        for name in names:
            conn.execute("INSERT INTO dogs (name, breed, age) VALUES (%s, 'labrador', 2)", (name,))
        rows = conn.execute("SELECT id, name FROM dogs ORDER BY id").fetchall()
    # Ids from 1: no other test has drawn from this database's identity sequence.
    assert rows == list(enumerate(names, start=1))


@pytest.mark.parametrize("n", range(COPIES))
def test_schema_changes_stay_in_their_test(db, n):
    with db.connect(autocommit=True) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'dogs'"
            )
        }
        assert columns == {"id", "name", "breed", "age"}
        conn.execute(f"ALTER TABLE dogs ADD COLUMN nickname_{n} text")
        conn.execute("DROP TABLE schema_migrations")


@pytest.mark.parametrize("n", range(COPIES // 2))
def test_web_server1s_store_on_a_database_of_its_own(db, n):
    registry = open_registry(Settings(database_url=db.url, database_pool_size=2))
    try:
        added = [
            registry.add(DogIn(name=f"store-{n}-{i}", breed="labrador", age=i), limit=3) for i in range(3)
        ]
        assert [dog.id for dog in added] == [1, 2, 3]
        assert registry.list() == added
        with pytest.raises(RegistryFullError):
            registry.add(DogIn(name="one-too-many", age=1), limit=3)
        registry.delete(2)
        assert [dog.id for dog in registry.list()] == [1, 3]
    finally:
        registry.close()
