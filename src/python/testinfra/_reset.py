"""Reset actions: how a service that can forget its state does so between tests.

A spec declares one (``ServiceSpec(reset=HttpReset("/reset"))``); `Service.reset()` runs it, and a
`reset_fixture` runs it before each test. Like readiness checks, an action is a strategy object
with one method, `reset(service)`, that raises on failure; `Service.reset()` turns any failure into
ResetError with the service's last log lines.

- HttpReset: an HTTP request to the service (e.g. ``POST /reset``) answered with an expected status.
- CommandReset: a command run beside the service (in its container, or locally), exiting 0,
  e.g. ``redis-cli FLUSHALL``.
- CallableReset: any Python callable given the Service handle (e.g. TRUNCATE through a driver).

A reset makes a service fit for the next test only when no other test uses it meanwhile: a
service of one process (session, module, class scope), never a shared one.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Protocol

from testinfra._errors import SpecError

if TYPE_CHECKING:
    from testinfra._service import Service

_HTTP_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0


class ResetAction(Protocol):
    def reset(self, service: Service) -> None:
        """Bring the service back to its initial state; raise on failure."""
        ...


@dataclass(frozen=True)
class HttpReset:
    """Reset by an HTTP request: `method` `path`, answered with one of `status`."""

    path: str = "/reset"
    method: str = "POST"
    status: tuple[int, ...] = (200, 204)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise SpecError(f"HttpReset path {self.path!r} must start with '/'")
        if not isinstance(self.method, str) or not self.method.isalpha():
            raise SpecError(f"HttpReset method {self.method!r} is not an HTTP method")
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "status", tuple(self.status))
        if not self.status or not all(type(code) is int for code in self.status):
            raise SpecError(f"HttpReset status {self.status!r} must be one or more integers")

    def reset(self, service: Service) -> None:
        conn = http.client.HTTPConnection(service.host, service.port, timeout=_HTTP_TIMEOUT)
        try:
            conn.request(self.method, self.path)
            response = conn.getresponse()
            body = response.read(500).decode(errors="replace")
        finally:
            conn.close()
        if response.status not in self.status:
            raise RuntimeError(
                f"{self.method} {self.path} answered {response.status}, not {' or '.join(map(str, self.status))}: {body}"
            )


@dataclass(frozen=True)
class CommandReset:
    """Reset by a command run beside the service (`docker exec` in its container, or locally with
    `{host}` and `{port}` replaced), which must exit with status 0."""

    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        argv: object = self.argv  # checked as given, whatever the annotation says
        if (
            isinstance(argv, str)
            or not isinstance(argv, tuple | list)
            or not argv
            or not all(isinstance(arg, str) for arg in argv)
        ):
            raise SpecError(f"CommandReset argv must be a non-empty sequence of strings, not {self.argv!r}")
        object.__setattr__(self, "argv", tuple(self.argv))

    def reset(self, service: Service) -> None:
        status, output = service.run_command(self.argv, _COMMAND_TIMEOUT)
        if status != 0:
            raise RuntimeError(f"{list(self.argv)} exited with {status}: {output.strip()[-500:]}")


@dataclass(frozen=True)
class CallableReset:
    """Reset by a Python callable, given the Service handle."""

    function: Callable[[Service], object]

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise SpecError(f"CallableReset needs a callable, not {self.function!r}")

    def reset(self, service: Service) -> None:
        self.function(service)
