"""The contract between a Service handle and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Protocol

from testinfra._spec import ServiceSpec
from testinfra._state import Owner


@dataclass(frozen=True)
class Endpoint:
    """An address at which a service answers."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Placement:
    """Whose an instance is, and where it runs."""

    run_id: str
    owner: Owner
    # The docker network it shares with its peers, if it has any.
    network: str | None = None
    # It must outlive the process that starts it (a shared service, or one kept after a failure).
    detached: bool = False


class Instance(Protocol):
    """One running (or stopped) copy of a service."""

    @property
    def resource_id(self) -> str:
        """The id `python -m testinfra ls` shows for it (container id, pid)."""
        ...

    def endpoint(self) -> Endpoint:
        """Where the tests (on this host) reach it."""
        ...

    def peer_endpoint(self) -> Endpoint:
        """Where other services of the same backend reach it."""
        ...

    def logs(self, tail: int | None = None) -> str: ...

    def exit_code(self) -> int | None:
        """None while it runs; its exit code after (-1 when another process started it)."""
        ...

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

    def record(self) -> dict[str, Any]:
        """What another process needs to attach to it (JSON-serialisable)."""
        ...


class Backend(Protocol):
    name: str

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> Instance:
        """Create and start an instance of `spec` with `env` already resolved."""
        ...

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> Instance:
        """An instance another process created, from its `record()`."""
        ...

    def network(self, placement: Placement, name: str | None = None) -> str | None:
        """A network for services that talk to each other: this process's, or a new one named `name`."""
        ...

    def remove_network(self, name: str) -> None: ...

    def close(self) -> None:
        """Free what the backend itself holds (its network, clients)."""
        ...
