"""WHAT NOT TO DO: every test starts and stops its own server by hand.

The baseline of the progression (see tests/fixture for the fix). Note what is wrong:
- the same setup and teardown lines in every test;
- a server per test, so the suite is as slow as its slowest start, times the number of tests;
- when an assertion fails, the teardown line below it never runs (here testinfra's session
  safety net still removes the server; with hand-rolled `docker run` it would leak).
It still polls for readiness instead of sleeping, so it is slow but not flaky.
"""

from tests import checks
from tests.services.web_server1 import WEB_SERVER1


def test_health(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_health(server.url)
    testinfra_manager.release(server)


def test_create_and_get(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_create_and_get(server.url)
    testinfra_manager.release(server)


def test_list_contains_created(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_list_contains_created(server.url)
    testinfra_manager.release(server)


def test_delete(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_delete(server.url)
    testinfra_manager.release(server)


def test_rejects_invalid_input(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_rejects_invalid_input(server.url)
    testinfra_manager.release(server)


def test_unknown_dog_is_404(testinfra_manager):
    server = testinfra_manager.start(WEB_SERVER1)
    checks.check_unknown_dog_is_404(server.url)
    testinfra_manager.release(server)
