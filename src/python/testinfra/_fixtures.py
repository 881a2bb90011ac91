"""service_fixture: one spec, a fixture at any scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testinfra._errors import SpecError
from testinfra._service import Manager
from testinfra._service import Service
from testinfra._spec import ServiceSpec

SCOPES = ("function", "class", "module", "package", "session", "shared")


def service_fixture(spec: ServiceSpec, *, scope: str = "function", name: str | None = None) -> Any:
    """A fixture that starts `spec` (dependencies first) and yields its Service.

    Assign it in a conftest or test module: ``web = service_fixture(WEB, scope="module")``.
    The fixture is named `name`, or else the spec's name. Scope "shared" is one instance for
    every xdist worker of the run (a session fixture in each), which tests may not stop or restart.
    """
    if scope not in SCOPES:
        raise SpecError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    shared = scope == "shared"

    def fixture(testinfra_manager: Manager) -> Iterator[Service]:
        service = testinfra_manager.start_shared(spec) if shared else testinfra_manager.start(spec)
        try:
            yield service
        finally:
            testinfra_manager.release(service)

    fixture.__name__ = name or spec.name
    fixture.__doc__ = f"The {spec.name!r} service ({scope} scope)."
    return pytest.fixture(scope="session" if shared else scope, name=name or spec.name)(fixture)  # type: ignore[call-overload]
