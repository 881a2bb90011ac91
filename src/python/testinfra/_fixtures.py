"""service_fixture: one spec, a fixture at any scope, named by the variable it is assigned to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from typing import Literal
from typing import get_args

import pytest

from testinfra._errors import SpecError
from testinfra._manager import Manager
from testinfra._service import Service
from testinfra._spec import ServiceSpec

Scope = Literal["function", "class", "module", "package", "session", "shared", "lease"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# The attribute of a function-scoped fixture's function that names its spec.
POOLED_SPEC = "_testinfra_pooled_spec"
# A shared service is a session fixture in each process of the run.
_PYTEST_SCOPE: dict[Scope, Literal["function", "class", "module", "package", "session"]] = {
    "function": "function",
    "class": "class",
    "module": "module",
    "package": "package",
    "session": "session",
    "shared": "session",
    "lease": "session",
}


def service_fixture(spec: ServiceSpec, *, scope: Scope = "function", name: str | None = None) -> Any:
    """A fixture that starts `spec` (dependencies first) and yields its Service.

    Assign it in a conftest or test module, and the fixture takes the variable's name (as
    ``mocker = pytest.fixture()(_mocker)`` does in pytest-mock)::

        web = service_fixture(WEB, scope="module")

        def test_health(web): ...

    `name` overrides it. At function scope each test gets a never-used instance from a warm pool
    (the next ones start while a test runs). Scope "shared" is one instance for every xdist
    worker of the run (a session fixture in each), which tests may not stop or restart. Scope
    "lease" is one instance for every test process of the machine that runs the same image (the
    files Pants runs side by side or one after another), removed a few seconds after the last one
    is done; its tests must not depend on what other processes did to it (see the README).
    """
    if scope not in SCOPES:
        raise SpecError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if not isinstance(spec, ServiceSpec):
        raise SpecError(f"service_fixture needs a ServiceSpec, not {spec!r}")
    shared = scope == "shared"

    def fixture(testinfra_manager: Manager) -> Iterator[Service]:
        if shared:
            service = testinfra_manager.start_shared(spec)
        elif scope == "lease":
            service = testinfra_manager.start_lease(spec)
        elif scope == "function":
            service = testinfra_manager.take(spec)
        else:
            service = testinfra_manager.start(spec)
        try:
            yield service
        finally:
            testinfra_manager.release(service)

    fixture.__doc__ = f"The {spec.name!r} service ({scope} scope)."
    if scope == "function":
        # The plugin counts the collected tests that use it, so the pool starts no more than needed.
        setattr(fixture, POOLED_SPEC, spec)
    return pytest.fixture(scope=_PYTEST_SCOPE[scope], name=name)(fixture)
