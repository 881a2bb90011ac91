"""ServiceSpec: a service described once, validated once, runnable by either backend."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import cached_property
from types import MappingProxyType

from testinfra._errors import SpecError
from testinfra._readiness import HttpCheck
from testinfra._readiness import ReadinessCheck
from testinfra._readiness import TcpCheck
from testinfra._reset import ResetAction

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_PORT = 65535

# The one placeholder syntax: {field} for the service's own values, {peer.field} for a
# dependency's address; {{ and }} are literal braces. Anything else with a brace is an error.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(?:(?P<peer>[a-z][a-z0-9_-]*)\.)?(?P<field>[a-z]+)\}|[{}]")

# What each placeholder means. Commands (the local-process backend) may use the first table;
# env values may name a dependency's address with the second.
COMMAND_FIELDS = {
    "python": "the interpreter running the tests (the child then sees the same sys.path)",
    "host": "the address to listen on (127.0.0.1)",
    "port": "the reserved port to listen on",
    "fd": "a listening socket already bound to {host}:{port}, inherited by the process",
    "workdir": "a private directory for this instance, removed with it",
}
# A container's own command (`args`) may say where to listen: what that is depends on its network.
ARGS_FIELDS = {
    "host": "the address to listen on: 127.0.0.1 with host_network, else 0.0.0.0 (the container's own)",
    "port": "the port to listen on: one testinfra reserves with host_network, else `port`",
}
PEER_FIELDS = {
    "url": "http://host:port of the dependency, as this service reaches it",
    "host": "the dependency's host name or address, as this service reaches it",
    "port": "the dependency's port, as this service reaches it",
}


def placeholders(text: str) -> list[tuple[str | None, str]]:
    """The (peer, field) placeholders in `text`; SpecError for a malformed one."""
    found = []
    for match in _PLACEHOLDER.finditer(text):
        token = match.group()
        if token in ("{{", "}}"):
            continue
        if match["field"] is None:
            raise SpecError(
                f"{text!r} has a malformed placeholder near position {match.start()}: write {{field}} or "
                "{peer.field}, and {{ or }} for a literal brace"
            )
        found.append((match["peer"], match["field"]))
    return found


def render(text: str, values: Callable[[str | None, str], str]) -> str:
    """`text` with each placeholder replaced by `values(peer, field)` (validated specs only)."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        return values(match["peer"], match["field"])

    return _PLACEHOLDER.sub(substitute, text)


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """How to run a service, in a container or as a local process.

    - ``image``: a Pants ``docker_image`` address (``path/to/dir:target``) or an image reference.
    - ``command``: argv of the local process, with placeholders (see COMMAND_FIELDS):
      ``{python}``, ``{host}``, ``{port}``, ``{fd}`` (pass it when the program can serve on an
      inherited socket, e.g. uvicorn ``--fd``: no other process can take the port meanwhile),
      ``{workdir}``.
    - ``args``: the container's command (what follows the image's entrypoint), if not the image's,
      with placeholders ``{host}`` and ``{port}`` (see ARGS_FIELDS).
    - ``tmpfs``: container paths mounted in memory (e.g. a database's data directory: faster,
      and gone with the container). A local process uses ``{workdir}`` instead.
    - ``port``: the port the service listens on inside its container.
    - ``host_network``: run the container in the host's network namespace, listening on a port
      testinfra reserves, which ``args`` pass on (``"--port", "{port}"``). It skips the network
      namespace, bridge and port proxy a container otherwise gets: faster to start, and lighter.
      A service and its dependencies use it alike. Where the engine's host network is not this
      machine's (a remote or rootless engine, Docker Desktop), the service runs bridged instead.
    - ``ready``: a readiness check (HttpCheck() by default).
    - ``env``: extra environment. Values may name a dependency's address as this service sees it:
      ``"{web_server1.url}"``, ``"{web_server1.host}"``, ``"{web_server1.port}"``.
    - ``depends_on``: services started before this one, and torn down after it.
    - ``wait_for_dependencies``: False when this service may start before its dependencies are
      ready (it only needs their addresses, e.g. it calls them per request): a graph then gets
      ready in about the time of its slowest service instead of the sum.
    - ``start_timeout`` / ``stop_timeout``: seconds to become ready / to stop before being killed.
    - ``reset``: how the service forgets its state between tests (HttpReset, CommandReset,
      CallableReset), for ``Service.reset()`` and ``reset_fixture``; None when it cannot.
    """

    name: str
    image: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    tmpfs: tuple[str, ...] = ()
    port: int = 80
    host_network: bool = False
    ready: ReadinessCheck = field(default_factory=HttpCheck)
    env: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[ServiceSpec, ...] = ()
    wait_for_dependencies: bool = True
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    reset: ResetAction | None = None

    def __post_init__(self) -> None:
        def fail(message: str) -> SpecError:
            return SpecError(f"service {self.name!r}: {message}")

        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(
                f"service name {self.name!r} is invalid: use 1-41 lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if self.image is None and self.command is None:
            raise fail("needs an image, a command, or both")
        if self.image is not None and (not isinstance(self.image, str) or not self.image.strip()):
            raise fail(f"image {self.image!r} is empty; give an image reference or a Pants address")
        for field_name in ("command", "args"):
            self._check_argv(field_name)
        object.__setattr__(self, "tmpfs", tuple(self.tmpfs))
        for path in self.tmpfs:
            if not isinstance(path, str) or not path.startswith("/"):
                raise fail(f"tmpfs entry {path!r} is not an absolute path in the container")
        if self.command is not None:
            for arg in self.command:
                for peer, name in placeholders(arg):
                    if peer is not None or name not in COMMAND_FIELDS:
                        shown = f"{peer}.{name}" if peer else name
                        raise fail(
                            f"unknown placeholder {{{shown}}} in command; known: "
                            + ", ".join(f"{{{known}}}" for known in COMMAND_FIELDS)
                        )
        if type(self.port) is not int or not 1 <= self.port <= _MAX_PORT:
            raise fail(f"port {self.port!r} is not an integer in 1-{_MAX_PORT}")
        if not callable(getattr(self.ready, "probe", None)):
            raise fail(f"ready={self.ready!r} is not a readiness check (an object with a probe method)")
        if self.reset is not None and not callable(getattr(self.reset, "reset", None)):
            raise fail(f"reset={self.reset!r} is not a reset action (HttpReset, CommandReset, CallableReset)")
        if not (_positive_seconds(self.start_timeout) and _positive_seconds(self.stop_timeout)):
            raise fail("start_timeout and stop_timeout must be finite positive numbers of seconds")
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        for dep in self.depends_on:
            if not isinstance(dep, ServiceSpec):
                raise fail(f"depends_on entry {dep!r} is not a ServiceSpec")
        self._check_network()
        self._check_env()
        if (
            isinstance(self.ready, TcpCheck)
            and not self.ready.expect
            and self.command is not None
            and any("{fd}" in arg for arg in self.command)
        ):
            raise fail(
                "TcpCheck() proves nothing for a process served on {fd}: testinfra's own socket accepts "
                "connections before the service does. Use HttpCheck, or TcpCheck(send=..., expect=...)"
            )

    def _check_network(self) -> None:
        def fail(message: str) -> SpecError:
            return SpecError(f"service {self.name!r}: {message}")

        told = set()
        for arg in self.args or ():
            for peer, name in placeholders(arg):
                if peer is not None or name not in ARGS_FIELDS:
                    shown = f"{peer}.{name}" if peer else name
                    raise fail(
                        f"unknown placeholder {{{shown}}} in args; known: "
                        + ", ".join(f"{{{known}}}" for known in ARGS_FIELDS)
                    )
                told.add(name)
        if type(self.host_network) is not bool:
            raise fail(f"host_network={self.host_network!r} must be True or False")
        if self.host_network and self.image is None:
            raise fail("host_network=True applies to a container; this service has no image")
        if self.host_network and "port" not in told:
            raise fail(
                "with host_network=True the service must listen on the port testinfra reserves: pass it "
                "in args, e.g. args=('--host', '{host}', '--port', '{port}')"
            )
        for dep in self.depends_on:
            if self.image and dep.image and dep.host_network != self.host_network:
                on_host, bridged = (dep, self) if dep.host_network else (self, dep)
                raise fail(
                    f"{on_host.name!r} uses the host's network and {bridged.name!r} does not: a "
                    "bridged container cannot reach the host's 127.0.0.1, and a bridged container's "
                    f"published port changes when it restarts. Set host_network=True on {bridged.name!r} "
                    "too (with {port} in its args), or on neither"
                )

    def _check_argv(self, field_name: str) -> None:
        value: object = getattr(self, field_name)  # checked as given, whatever the annotation says
        if value is None:
            return
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise SpecError(
                f"service {self.name!r}: {field_name} must be a non-empty sequence of arguments, e.g. "
                f"('{{python}}', '-m', 'app'), not {value!r}"
            )
        argv = tuple(value)
        for arg in argv:
            if not isinstance(arg, str):
                raise SpecError(f"service {self.name!r}: {field_name} argument {arg!r} is not a string")
        object.__setattr__(self, field_name, argv)

    def _check_env(self) -> None:
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        names = {dep.name for dep in self.depends_on}
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key) or not isinstance(value, str):
                raise SpecError(f"service {self.name!r}: env entry {key!r}={value!r} must be NAME=str")
            for peer, name in placeholders(value):
                if peer is None or name not in PEER_FIELDS:
                    raise SpecError(
                        f"service {self.name!r}: env {key}={value!r}: placeholders in env name a dependency's "
                        "address: {peer.url}, {peer.host} or {peer.port}"
                    )
                if peer not in names:
                    raise SpecError(
                        f"service {self.name!r}: env refers to {peer!r}, which is not in depends_on "
                        f"({sorted(names) or 'empty'}); add its spec to depends_on"
                    )

    @cached_property
    def fingerprint(self) -> str:
        """A stable hash of everything that defines the service (dependencies included).

        Processes of one run compare fingerprints to know they mean the same shared service.
        """
        identity = {
            "name": self.name,
            "image": self.image,
            "command": self.command,
            "args": self.args,
            "tmpfs": self.tmpfs,
            "port": self.port,
            "host_network": self.host_network,
            "ready": _check_identity(self.ready),
            "env": sorted(self.env.items()),
            "depends_on": [dep.fingerprint for dep in self.depends_on],
        }
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def _check_identity(check: ReadinessCheck) -> str:
    kind = f"{type(check).__module__}.{type(check).__qualname__}"
    if hasattr(type(check), "__dataclass_fields__"):
        return f"{kind}{dataclasses.astuple(check)!r}"  # type: ignore[call-overload]
    # Other checks are known by their class only: their repr may hold a memory address.
    return kind


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
