"""Readiness checks: is a started service able to serve yet?

A check is a strategy object with one method, `probe(target) -> bool`. `wait_until_ready` polls
it under a monotonic deadline, with an interval that starts short and backs off; gives up at once
when the service exits; and runs each probe on a helper thread, so a probe that hangs cannot hold
the session past the deadline.

What each check proves:
- HttpCheck: the service answers HTTP on its published address with the expected status.
- TcpCheck: the service's own socket accepts a connection (its container address, never
  Docker's port proxy, which accepts before the container listens); with `expect`, that it also
  answers `send` with the expected bytes, which is the only proof for a process served on `{fd}`.
- LogCheck: the service printed a line matching a pattern (only output printed after this start).
- CommandCheck: a command run beside the service (in its container, or locally for a process)
  exits with status 0, e.g. `pg_isready` or `redis-cli ping`.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from testinfra._errors import ServiceNotReadyError
from testinfra._errors import ServiceStartError

_FIRST_INTERVAL = 0.005
# Low enough that a service is seen ready within ~20 ms of it answering; a probe costs little.
_MAX_INTERVAL = 0.02
_PROBE_TIMEOUT = 1.0
LOG_TAIL_LINES = 40


class Probed(Protocol):
    """What a check may look at: where the service listens, what it printed, a command beside it."""

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str:
        """The address tests use (a published port, for a container)."""
        ...

    @property
    def port(self) -> int: ...

    def direct_address(self) -> tuple[str, int]:
        """An address that reaches the service's own socket, with no proxy in between."""
        ...

    def new_logs(self) -> str:
        """Output printed since the previous call (since the start, at the first call)."""
        ...

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        """Run `argv` beside the service; its exit status and output."""
        ...


class ReadinessCheck(Protocol):
    def probe(self, target: Probed) -> bool:
        """One attempt; True when ready. Should return within about a second."""
        ...


@dataclass(frozen=True)
class HttpCheck:
    """Ready when GET `path` answers with `status`."""

    path: str = "/health"
    status: int = 200

    def probe(self, target: Probed) -> bool:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=_PROBE_TIMEOUT)
        try:
            conn.request("GET", self.path)
            return conn.getresponse().status == self.status
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()


@dataclass(frozen=True)
class TcpCheck:
    """Ready when the service's own socket accepts a connection (and answers `send` with `expect`)."""

    send: bytes = b""
    expect: bytes = b""

    def probe(self, target: Probed) -> bool:
        try:
            with socket.create_connection(target.direct_address(), timeout=_PROBE_TIMEOUT) as conn:
                if self.send:
                    conn.sendall(self.send)
                if not self.expect:
                    return True
                received = b""
                while len(received) < len(self.expect):
                    chunk = conn.recv(len(self.expect) - len(received))
                    if not chunk:
                        return False
                    received += chunk
                return received == self.expect
        except OSError:
            return False


@dataclass(frozen=True)
class LogCheck:
    """Ready when the service's output (since this start) matches the regular expression `pattern`."""

    pattern: str

    def probe(self, target: Probed) -> bool:
        return re.search(self.pattern, target.new_logs(), re.MULTILINE) is not None


@dataclass(frozen=True)
class CommandCheck:
    """Ready when `argv`, run beside the service, exits with status 0.

    In a container it runs there (`docker exec`); for a local process it runs on this machine.
    `{host}` and `{port}` become the service's own address (inside its container, or the local one).
    """

    argv: tuple[str, ...]

    def probe(self, target: Probed) -> bool:
        status, _ = target.run(self.argv, _PROBE_TIMEOUT * 5)
        return status == 0


class _Probe(threading.Thread):
    """One probe on a daemon thread: a probe that hangs is abandoned at the deadline."""

    def __init__(self, check: ReadinessCheck, target: Probed) -> None:
        super().__init__(daemon=True, name="testinfra-probe")
        self.check, self.target = check, target
        self.ready = False
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.ready = bool(self.check.probe(self.target))
        except Exception as exc:  # reported with the service's name and logs below
            self.error = exc


class Waitable(Probed, Protocol):
    def exit_code(self) -> int | None:
        """The exit code once the service has exited, else None."""
        ...

    def logs(self, tail: int | None = None) -> str: ...


def wait_until_ready(target: Waitable, check: ReadinessCheck, timeout: float) -> float:
    """Poll `check` until it passes; returns the seconds it took.

    Raises ServiceStartError as soon as the service exits, ServiceNotReadyError at the deadline
    or when the check itself raises.
    """
    start = time.monotonic()
    deadline = start + timeout
    interval = _FIRST_INTERVAL
    while True:
        code = target.exit_code()
        if code is not None:
            raise ServiceStartError(
                "exited before it was ready",
                service=target.name,
                exit_code=code,
                logs_tail=target.logs(tail=LOG_TAIL_LINES),
            )
        probe = _Probe(check, target)
        probe.start()
        probe.join(max(deadline - time.monotonic(), 0.0))
        if probe.error is not None:
            raise ServiceNotReadyError(
                f"its readiness check {check!r} raised {probe.error!r}",
                service=target.name,
                logs_tail=target.logs(tail=LOG_TAIL_LINES),
            ) from probe.error
        if probe.ready:
            return time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            hung = " (the last probe did not even return)" if probe.is_alive() else ""
            raise ServiceNotReadyError(
                f"not ready after {timeout:.1f}s ({check!r}){hung}; raise the spec's start_timeout if it "
                "is just slow",
                service=target.name,
                logs_tail=target.logs(tail=LOG_TAIL_LINES),
            )
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, _MAX_INTERVAL)
