"""The database stage: one PostgreSQL and one Redis for the whole run, and state of its own per test.

One PostgreSQL and one Redis serve every test process of the machine (scope "lease": under
`./pants test` each file is a process of its own, and they share the servers; under `pytest -n
auto` every worker does). Each test gets a database cloned from a template migrated once per run, or a
Redis index or key prefix of its own; services under test are bound to them (a never-used
instance per test, started ahead). Tests here may therefore assert *equality* (exactly the rows
they wrote, ids from 1), which a shared database would break under `-n auto`: see test_naive.py.

The tests of this directory run in an order shuffled by a seed: DATABASE_STAGE_SEED=N repeats it
(every xdist worker of a run shuffles alike: they must collect the same list).
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest

from labrador.web_server1 import migrations
from testinfra import Migrations
from testinfra import ServiceSpec
from testinfra import database_fixture
from testinfra import paired_service_fixture
from testinfra import redis_fixture
from testinfra import service_fixture
from tests.services.postgres import POSTGRES
from tests.services.redis import REDIS
from tests.services.web_server1 import WEB_SERVER1
from tests.services.web_server2 import WEB_SERVER2

# One server of each for every test process of the machine: started by the first, removed a few
# seconds after the last (a scope="shared" server would be one per process under Pants).
postgres = service_fixture(POSTGRES, scope="lease")
redis = service_fixture(REDIS, scope="lease")

# web_server1's own migrations, applied by its own migrator (so its schema_migrations table says
# they are done); the key changes whenever a migration file does, and so does the template.
DOGS = Migrations(apply=migrations.apply, key=migrations.fingerprint())

db = database_fixture("postgres", migrations=DOGS)
# A second database in the same test (test_naive.py compares two sessions).
other_db = database_fixture("postgres", migrations=DOGS)
cache = redis_fixture("redis")
cards = redis_fixture("redis", isolation="prefix")

# web_server1 on a database of its own, per test.
web_server1 = paired_service_fixture(WEB_SERVER1, db, env={"WEB_SERVER1_DATABASE_URL": "{url}"})

# web_server2 with its card cache under a key prefix of its own, per test. Its upstream is left
# unreachable on purpose: a card it serves can only come from this test's cache.
CACHING_WEB_SERVER2 = ServiceSpec(
    name="web_server2",
    image=WEB_SERVER2.image,
    command=WEB_SERVER2.command,
    args=WEB_SERVER2.args,
    host_network=WEB_SERVER2.host_network,
    env={"WEB_SERVER2_UPSTREAM_URL": "http://127.0.0.1:9", "WEB_SERVER2_UPSTREAM_TIMEOUT": "1"},
)
web_server2 = paired_service_fixture(
    CACHING_WEB_SERVER2, cards, env={"WEB_SERVER2_REDIS_URL": "{url}", "WEB_SERVER2_REDIS_PREFIX": "{prefix}"}
)

if os.environ.get("DATABASE_STAGE_BASELINE"):
    # What the benchmark compares with: a fresh container per test, or one shared database.
    from tests.database import baseline

    db, other_db, web_server1 = baseline.db, baseline.other_db, baseline.web_server1

_HERE = Path(__file__).parent
_SEED = pytest.StashKey[int]()


def _seed() -> int:
    given = os.environ.get("DATABASE_STAGE_SEED")
    if given:
        return int(given)
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of a run
    if run:
        return uuid.UUID(run).int % 1_000_000
    return random.SystemRandom().randrange(1_000_000)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Shuffle this directory's tests in place (the others keep their order)."""
    seed = config.stash.setdefault(_SEED, _seed())
    slots = [i for i, item in enumerate(items) if _HERE in item.path.parents]
    mine = [items[i] for i in slots]
    random.Random(seed).shuffle(mine)
    for slot, item in zip(slots, mine, strict=True):
        items[slot] = item


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash.setdefault(_SEED, _seed())
    return f"database stage: tests shuffled with seed {seed} (DATABASE_STAGE_SEED={seed} repeats the order)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and _SEED in item.config.stash:
        report.sections.append(
            ("database stage", f"order shuffled with DATABASE_STAGE_SEED={item.config.stash[_SEED]}")
        )
    return report
