"""Readiness checks: is a started service able to serve yet?

A check is a strategy object; `wait_until_ready` polls it under a monotonic deadline, with an
interval that starts short and backs off, and gives up at once when the service has exited.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from testinfra._errors import ServiceNotReadyError
from testinfra._errors import ServiceStartError

_FIRST_INTERVAL = 0.005
# Low enough that a service is seen ready within ~50 ms of it answering.
_MAX_INTERVAL = 0.05
_PROBE_TIMEOUT = 1.0
LOG_TAIL_LINES = 40


class Probed(Protocol):
    """What a check may look at: where the service listens and what it printed."""

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def logs(self, tail: int | None = None) -> str: ...

    def exit_code(self) -> int | None:
        """The exit code once the service has exited, else None."""
        ...


class ReadinessCheck(Protocol):
    def probe(self, service: Probed) -> bool:
        """One attempt; True when ready. Must return within about a second."""
        ...


@dataclass(frozen=True)
class HttpCheck:
    """Ready when GET `path` answers with `status`."""

    path: str = "/health"
    status: int = 200

    def probe(self, service: Probed) -> bool:
        conn = http.client.HTTPConnection(service.host, service.port, timeout=_PROBE_TIMEOUT)
        try:
            conn.request("GET", self.path)
            return conn.getresponse().status == self.status
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()


@dataclass(frozen=True)
class TcpCheck:
    """Ready when a TCP connection is accepted."""

    def probe(self, service: Probed) -> bool:
        try:
            with socket.create_connection((service.host, service.port), timeout=_PROBE_TIMEOUT):
                return True
        except OSError:
            return False


@dataclass(frozen=True)
class LogCheck:
    """Ready when the service's output matches the regular expression `pattern`."""

    pattern: str

    def probe(self, service: Probed) -> bool:
        return re.search(self.pattern, service.logs()) is not None


def wait_until_ready(service: Probed, check: ReadinessCheck, timeout: float) -> float:
    """Poll `check` until it passes; returns the seconds it took.

    Raises ServiceStartError as soon as the service exits, ServiceNotReadyError at the deadline.
    """
    start = time.monotonic()
    deadline = start + timeout
    interval = _FIRST_INTERVAL
    while True:
        code = service.exit_code()
        if code is not None:
            raise ServiceStartError(
                "exited before it was ready",
                service=service.name,
                exit_code=code,
                logs_tail=service.logs(tail=LOG_TAIL_LINES),
            )
        if check.probe(service):
            return time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            raise ServiceNotReadyError(
                f"not ready after {timeout:.1f}s ({check!r}); raise the spec's start_timeout if it is just slow",
                service=service.name,
                logs_tail=service.logs(tail=LOG_TAIL_LINES),
            )
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, _MAX_INTERVAL)
