"""Service: the handle a test gets on a running service, whichever backend runs it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from testinfra._backends.base import Endpoint
from testinfra._backends.base import Instance
from testinfra._errors import ResetError
from testinfra._errors import SharedServiceError
from testinfra._errors import TestinfraError
from testinfra._readiness import LOG_TAIL_LINES
from testinfra._readiness import wait_until_ready
from testinfra._spec import ServiceSpec

_COMMAND_TIMEOUT = 30.0
# Readiness polls the service's state between probes; the backend (an engine call for Docker) is
# asked at most this often: a service that exits while starting fails that much later at most.
# Every other caller asks afresh.
_STATE_TTL = 0.2


class Service:
    """A running service, as the tests see it: its address, its logs, and ways to disrupt it."""

    def __init__(
        self,
        spec: ServiceSpec,
        instance: Instance,
        backend: str,
        dependencies: dict[str, Service],
        *,
        shared: bool = False,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.dependencies = dependencies
        # One instance for every worker of the run: no single test may stop or restart it.
        self.shared = shared
        # Set when a test that used it failed and keep-on-failure is on: left running at release.
        self.keep = False
        self.ready_seconds: float | None = None
        self._instance = instance

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host(self) -> str:
        return self._instance.endpoint().host

    @property
    def port(self) -> int:
        return self._instance.endpoint().port

    @property
    def url(self) -> str:
        """Base URL from the test process, e.g. http://127.0.0.1:20517."""
        return self._instance.endpoint().url

    @property
    def peer(self) -> Endpoint:
        """Where other services reach this one (a container name on the graph's network)."""
        return self._instance.peer_endpoint()

    @property
    def resource_id(self) -> str:
        """Its container id or pid, as `python -m testinfra ls` shows it."""
        return self._instance.resource_id

    def dependency(self, name: str) -> Service:
        """The handle of a service this one depends on, directly or not."""
        for dep in self.dependencies.values():
            if dep.name == name:
                return dep
            try:
                return dep.dependency(name)
            except KeyError:
                continue
        raise KeyError(f"{self.name!r} does not depend on {name!r}")

    def logs(self, tail: int | None = None) -> str:
        """What the service printed (the last `tail` lines, if given)."""
        return self._instance.logs(tail)

    def exit_code(self) -> int | None:
        return self._instance.exit_code()

    def run_command(self, argv: Sequence[str], timeout: float = _COMMAND_TIMEOUT) -> tuple[int, str]:
        """Run `argv` beside the service (in its container, or locally); its status and output."""
        return self._instance.run(argv, timeout)

    def wait_ready(self) -> float:
        """Block until the spec's readiness check passes (see ServiceSpec.ready); returns the seconds."""
        self.ready_seconds = wait_until_ready(
            _ReadinessView(self, self._instance), self.spec.ready, self.spec.start_timeout
        )
        return self.ready_seconds

    def reset(self) -> None:
        """Run the spec's reset action (ServiceSpec.reset): the service forgets its state.

        ResetError, with its last log lines, when it fails or the spec declares none.
        """
        if self.spec.reset is None:
            raise ResetError(
                "its spec declares no reset action; give it reset=HttpReset(...), CommandReset(...) or "
                "CallableReset(...)",
                service=self.name,
            )
        try:
            self.spec.reset.reset(self)
        except Exception as exc:
            raise ResetError(
                f"its reset {self.spec.reset!r} failed: {exc}",
                service=self.name,
                exit_code=self.exit_code(),
                logs_tail=self.logs(tail=LOG_TAIL_LINES),
            ) from exc

    def _not_shared(self, action: str) -> None:
        if self.shared:
            raise SharedServiceError(
                f"cannot {action} the shared service {self.name!r}: other workers use it. "
                "Use a private scope (function, module or session) for a service a test disrupts"
            )

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after the spec's stop_timeout)."""
        self._not_shared("stop")
        self._instance.stop(self.spec.stop_timeout)

    def kill(self) -> None:
        """Kill at once, as a crash would."""
        self._not_shared("kill")
        self._instance.kill()

    def restart(self) -> None:
        """Stop if running, start again at the same peer address, and wait until ready."""
        self._not_shared("restart")
        if self.exit_code() is None:
            self.stop()
        self._instance.start()
        self.wait_ready()

    def report(self) -> tuple[str, str]:
        """A report section for a failed test: its state, address and last log lines."""
        try:
            code = self.exit_code()
            state = "running" if code is None else f"exited with code {code}"
            body = self.logs(tail=LOG_TAIL_LINES)
        except TestinfraError as exc:
            state, body = "unknown", str(exc)
        return f"testinfra: {self.name} ({self.backend}, {state}) at {self.url}", body

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.backend} {self.url}>"


class _ReadinessView:
    """What a readiness check sees of one start: logs from this start on, commands beside it."""

    def __init__(self, service: Service, instance: Instance) -> None:
        self._service = service
        self._instance = instance
        self._cursor: Any = None
        self._exit_code: int | None = None
        self._asked_at = -_STATE_TTL

    @property
    def name(self) -> str:
        return self._service.name

    @property
    def host(self) -> str:
        return self._service.host

    @property
    def port(self) -> int:
        return self._service.port

    def direct_address(self) -> tuple[str, int]:
        return self._instance.direct_address()

    def new_logs(self) -> str:
        text, self._cursor = self._instance.read_logs(self._cursor)
        return text

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        return self._instance.run(argv, timeout)

    def exit_code(self) -> int | None:
        now = time.monotonic()
        if now - self._asked_at >= _STATE_TTL:
            self._exit_code = self._instance.exit_code()
            self._asked_at = now
        return self._exit_code

    def logs(self, tail: int | None = None) -> str:
        return self._instance.logs(tail)


def failure_report(services: list[Service]) -> list[tuple[str, str]]:
    """Report sections for a failed test: each service it used, and their dependencies."""
    sections = []
    seen: set[int] = set()
    stack = list(services)
    while stack:
        service = stack.pop()
        if id(service) in seen:
            continue
        seen.add(id(service))
        stack.extend(service.dependencies.values())
        sections.append(service.report())
    return sections
