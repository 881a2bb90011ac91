"""ServiceSpec: a service described once, runnable by either backend."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from types import MappingProxyType

from testinfra._errors import SpecError
from testinfra._readiness import HttpCheck
from testinfra._readiness import ReadinessCheck

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
_PLACEHOLDERS = frozenset({"python", "host", "port", "fd"})
_MAX_PORT = 65535


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """How to run a service, in a container or as a local process.

    - ``image``: a Pants ``docker_image`` address (``path/to/dir:target``) or an image reference.
    - ``command``: argv of the local process. ``{python}`` is the current interpreter (the child
      then sees the same ``sys.path``), ``{fd}`` an inherited listening socket already bound to
      ``{host}:{port}``; pass ``{fd}`` when the program can serve on it (uvicorn ``--fd``).
    - ``port``: the port the service listens on inside its container.
    - ``env``: extra environment. Values may name a dependency's address as seen from this
      service: ``"{web_server1.url}"``, ``"{web_server1.host}"``, ``"{web_server1.port}"``.
    - ``depends_on``: services started before this one, and torn down after it.
    """

    name: str
    image: str | None = None
    command: tuple[str, ...] | None = None
    port: int = 80
    ready: ReadinessCheck = field(default_factory=HttpCheck)
    env: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[ServiceSpec, ...] = ()
    start_timeout: float = 30.0
    stop_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SpecError(
                f"service name {self.name!r} is invalid: use 1-41 lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if self.image is None and self.command is None:
            raise SpecError(f"service {self.name!r} needs an image, a command, or both")
        if not 1 <= self.port <= _MAX_PORT:
            raise SpecError(f"service {self.name!r}: port {self.port} is out of range 1-{_MAX_PORT}")
        if self.start_timeout <= 0 or self.stop_timeout <= 0:
            raise SpecError(f"service {self.name!r}: start_timeout and stop_timeout must be positive")
        if self.command is not None:
            object.__setattr__(self, "command", tuple(self.command))
            for arg in self.command:
                unknown = set(re.findall(r"{(\w+)}", arg)) - _PLACEHOLDERS
                if unknown:
                    raise SpecError(
                        f"service {self.name!r}: unknown placeholder(s) {sorted(unknown)} in command; "
                        f"known: {sorted(_PLACEHOLDERS)}"
                    )
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        names = {dep.name for dep in self.depends_on}
        for value in self.env.values():
            for ref in re.findall(r"{(\w[\w-]*)\.\w+}", value):
                if ref not in names:
                    raise SpecError(
                        f"service {self.name!r}: env refers to {ref!r}, which is not in depends_on "
                        f"({sorted(names) or 'empty'}); add its spec to depends_on"
                    )

    def __hash__(self) -> int:
        return hash((self.name, self.image, self.command, self.port))


def start_order(spec: ServiceSpec) -> list[ServiceSpec]:
    """`spec` and everything it depends on, dependencies first.

    Services are identified by name: two different specs with one name, or a name that
    depends on itself through others, is an error.
    """
    order: list[ServiceSpec] = []
    done: dict[str, ServiceSpec] = {}

    def visit(node: ServiceSpec, path: tuple[str, ...]) -> None:
        if node.name in path:
            cycle = " -> ".join((*path[path.index(node.name) :], node.name))
            raise SpecError(f"dependency cycle: {cycle}; break it by removing one depends_on entry")
        if node.name in done:
            if done[node.name] != node:
                raise SpecError(f"two different services are named {node.name!r}; give each a unique name")
            return
        for dep in node.depends_on:
            visit(dep, (*path, node.name))
        done[node.name] = node
        order.append(node)

    visit(spec, ())
    return order
