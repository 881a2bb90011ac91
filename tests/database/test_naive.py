"""The naive way, and why it breaks: one database that every test writes to.

Under `pytest -n auto` tests run at once. Each below adds a dog, then checks that the registry
holds its dog and no other. On one shared database it sees the other test's row too whenever
their steps interleave, which happens by chance: the suite fails on some runs and not others.
To show it every time, these tests force that interleaving: two tests (as two xdist workers would
run them) meet after writing and before reading. On one database both fail; on a database each,
both pass. (bench/databases.py also runs this directory's tests on one shared database, where
they break without any forcing: see the README.)
"""

import threading

import pytest


def registers_one_dog(me, db, meeting):
    """A test as a developer would write it against "the" test database."""
    with db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO dogs (name, breed, age) VALUES (%s, 'labrador', 1)", (me,))
        meeting.wait(timeout=30)  # the other test has written too: what -n auto does by chance
        names = sorted(row[0] for row in conn.execute("SELECT name FROM dogs"))
    assert names == [me], f"saw {names}: another test's rows"


def run_side_by_side(first_db, second_db):
    """Run two such tests at once; each one's failure message, or None when it passed."""
    meeting = threading.Barrier(2)
    outcomes: dict[str, str | None] = {}

    def run(me, db):
        try:
            registers_one_dog(me, db, meeting)
            outcomes[me] = None
        except AssertionError as failure:
            outcomes[me] = str(failure).splitlines()[0]

    threads = [threading.Thread(target=run, args=pair) for pair in (("ada", first_db), ("bo", second_db))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_one_shared_database_lets_each_test_see_the_others_rows(db):
    outcomes = run_side_by_side(db, db)
    assert outcomes == {
        "ada": "saw ['ada', 'bo']: another test's rows",
        "bo": "saw ['ada', 'bo']: another test's rows",
    }


@pytest.mark.parametrize("n", range(5))
def test_a_database_per_test_keeps_them_apart(db, other_db, n):
    assert db.url != other_db.url
    assert run_side_by_side(db, other_db) == {"ada": None, "bo": None}
