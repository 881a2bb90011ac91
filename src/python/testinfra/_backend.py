"""The contract between a Service handle and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from testinfra._spec import ServiceSpec


@dataclass(frozen=True)
class Endpoint:
    """An address at which a service answers."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Instance(Protocol):
    """One running (or stopped) copy of a service."""

    def endpoint(self) -> Endpoint:
        """Where the tests (on this host) reach it."""
        ...

    def peer_endpoint(self) -> Endpoint:
        """Where other services of the same backend reach it."""
        ...

    def logs(self, tail: int | None = None) -> str: ...

    def exit_code(self) -> int | None: ...

    def stop(self, timeout: float) -> None:
        """Stop gracefully, killing after `timeout`; it can be started again."""
        ...

    def kill(self) -> None: ...

    def start(self) -> None:
        """Start again after stop() or kill(), at the same peer address."""
        ...

    def remove(self) -> None:
        """Stop for good and free everything it holds."""
        ...


class Backend(Protocol):
    name: str

    def create(self, spec: ServiceSpec, env: dict[str, str], *, networked: bool) -> Instance:
        """Create and start an instance of `spec` with `env` already resolved.

        `networked`: other services will talk to it, or it to them (peer addresses must work).
        """
        ...

    def close(self) -> None:
        """Free what the backend itself holds (networks, clients)."""
        ...
