"""The contract between the manager and a backend, and between a Service handle and an instance.

A backend runs instances of specs (containers, local processes), gives networks to services that
talk to each other, and lists and removes its own resources: the reaper asks each backend, it
never parses a backend's private records.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from testinfra._owner import Owner

if TYPE_CHECKING:
    from testinfra._spec import ServiceSpec


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
    # The backend's network it shares with its peers (as the backend named it), if any.
    network: str | None = None
    # It must outlive the process that starts it (a shared service, or one kept after a failure).
    detached: bool = False


@dataclass(frozen=True)
class Resource:
    """Something a backend created for a run: a container, a network, a process."""

    backend: str
    kind: str
    id: str
    name: str
    run: str
    # None when the record names no owner we can parse: never ours to judge.
    owner: Owner | None
    created: float | None = None
    # Left running after a failed test (--testinfra-keep-on-failure): only `reap --kept` removes it.
    kept: bool = False
    # What the backend needs to remove it; private to that backend.
    detail: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def orphaned(self) -> bool:
        return not self.kept and self.owner is not None and not self.owner.alive


class Instance(Protocol):
    """One running (or stopped) copy of a service. Every method raises only TestinfraError."""

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

    def direct_address(self) -> tuple[str, int]:
        """Its own socket, with no proxy in between (for TCP readiness)."""
        ...

    def logs(self, tail: int | None = None) -> str: ...

    def read_logs(self, cursor: Any) -> tuple[str, Any]:
        """Output since `cursor` (None: since the last start), and the cursor to pass next time."""
        ...

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        """Run a command beside it (in its container, or on this machine): status and output."""
        ...

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

    def keep(self) -> None:
        """Mark it, on the resource itself, as kept after a failure: no sweep removes it."""
        ...

    def record(self) -> dict[str, Any]:
        """What another process needs to attach to it (JSON-serialisable)."""
        ...


class Backend(Protocol):
    name: str
    # What a spec needs to run here, for error messages: "an image", "a command".
    needs: str

    @property
    def host_network(self) -> bool:
        """Whether what runs on "the host's network" here shares this process's network (local
        processes always do; containers where the engine runs beside us, see host_network_problem)."""
        ...

    def supports(self, spec: ServiceSpec) -> bool: ...

    def identity(self, spec: ServiceSpec) -> str:
        """What an instance of `spec` would run here (an image id, an interpreter and import
        path): two processes may share an instance only if they agree on it."""
        ...

    def pinned(self, spec: ServiceSpec) -> ServiceSpec | None:
        """`spec` with what it runs fixed (an image id, not a path into the build outputs), so that
        a process that outlives this one (a lease's keeper) can start it; None if it cannot."""
        ...

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> Instance:
        """Create and start an instance of `spec` with `env` already resolved (not waiting for readiness)."""
        ...

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> Instance:
        """An instance another process created, from its `record()`."""
        ...

    def create_network(self, purpose: str, placement: Placement) -> str | None:
        """A new network for services that talk to each other (None where they need none)."""
        ...

    def remove_network(self, network: str) -> None: ...

    def resources(self, run: str | None = None) -> list[Resource]:
        """Everything this backend created (for one run, if given), on this machine or engine."""
        ...

    def remove(self, resource: Resource) -> bool:
        """Remove one of its resources; False when it must stay (a network still in use)."""
        ...

    def close(self) -> None:
        """Free what the backend itself holds (clients)."""
        ...
