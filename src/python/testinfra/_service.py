"""Service handles, and the manager that starts, tracks and tears them down."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from testinfra._backend import Backend
from testinfra._backend import Endpoint
from testinfra._backend import Instance
from testinfra._backend import Placement
from testinfra._errors import BackendUnavailableError
from testinfra._errors import SpecError
from testinfra._errors import TestinfraError
from testinfra._readiness import LOG_TAIL_LINES
from testinfra._readiness import wait_until_ready
from testinfra._spec import ServiceSpec
from testinfra._spec import start_order
from testinfra._state import Owner
from testinfra._watchdog import ensure_watchdog
from testinfra._watchdog import register_owner
from testinfra._watchdog import run_dir

BACKENDS = ("auto", "docker", "process")


class Service:
    """A running service, as the tests see it."""

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
        self._instance = instance
        self.ready_seconds = wait_until_ready(self, spec.ready, spec.start_timeout)

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
        """Where other services reach this one (a container name on the run's network)."""
        return self._instance.peer_endpoint()

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

    @property
    def resource_id(self) -> str:
        """Its container id or pid, as `python -m testinfra ls` shows it."""
        return self._instance.resource_id

    def _not_shared(self, action: str) -> None:
        if self.shared:
            raise TestinfraError(
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
        self.ready_seconds = wait_until_ready(self, self.spec.ready, self.spec.start_timeout)

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.backend} {self.url}>"


def _resolve_env(spec: ServiceSpec, deps: dict[str, Service]) -> dict[str, str]:
    def substitute(value: str) -> str:
        def field(match: re.Match[str]) -> str:
            peer = deps[match["name"]].peer
            attr = match["attr"]
            if attr not in ("url", "host", "port"):
                raise SpecError(f"service {spec.name!r}: env may use .url, .host or .port, not .{attr}")
            return str(getattr(peer, attr))

        return re.sub(r"{(?P<name>\w[\w-]*)\.(?P<attr>\w+)}", field, value)

    return {key: substitute(value) for key, value in spec.env.items()}


class Manager:
    """Everything one test process started; `close()` stops it all, whatever happened before."""

    def __init__(
        self,
        run_id: str,
        backend: str = "auto",
        require_docker: bool = False,
        *,
        keep_on_failure: bool = False,
        run_owner: Owner | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise SpecError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.run_id = run_id
        self.requested_backend = backend
        self.require_docker = require_docker
        self.keep_on_failure = keep_on_failure
        # The process that began the run; shared services belong to it, not to a worker.
        self.run_owner = run_owner or Owner.me()
        self.logs_dir = run_dir(run_id) / "logs" / str(os.getpid())
        self.kept: list[Service] = []
        self._backends: dict[str, Backend] = {}
        self._live: list[tuple[Service, list[Instance]]] = []
        self._shared: list[Service] = []
        self._owner_file: Path | None = None

    def backend_for(self, order: list[ServiceSpec]) -> Backend:
        """One backend for a whole start graph: containers cannot reach local processes by name."""
        name = self.requested_backend
        if name == "auto":
            name = self._auto_choice(order)
        missing = [s.name for s in order if (s.image if name == "docker" else s.command) is None]
        if missing:
            what = "an image" if name == "docker" else "a command"
            raise SpecError(f"backend {name!r} needs {what} for every service; {missing} have none")
        return self.backend_named(name)

    def backend_named(self, name: str) -> Backend:
        if name not in self._backends:
            if name == "docker":
                from testinfra._docker import DockerBackend

                self._backends[name] = DockerBackend()
            else:
                from testinfra._process import ProcessBackend

                self.logs_dir.mkdir(parents=True, exist_ok=True)
                self._backends[name] = ProcessBackend(self.logs_dir)
        return self._backends[name]

    def _auto_choice(self, order: list[ServiceSpec]) -> str:
        if all(spec.image is not None for spec in order):
            try:
                self.backend_named("docker")  # connects once; the backend is kept for later starts
            except BackendUnavailableError:
                pass
            else:
                return "docker"
        if self.require_docker:
            raise BackendUnavailableError(
                "Docker is required here (TESTINFRA_REQUIRE_DOCKER / --testinfra-require-docker) but no "
                "engine answers; start one, or unset the requirement to run services as local processes"
            )
        if any(spec.command is None for spec in order):
            raise BackendUnavailableError(
                f"service {order[-1].name!r} needs a Docker engine (some of its services have no command) "
                "and none answers; start an engine or give every spec a command to run as local processes"
            )
        return "process"

    def _register(self) -> None:
        """Before this process's first resource: sweep orphans, then register with the watchdog.

        Here rather than at session start, so sessions that start no service pay nothing.
        """
        if self._owner_file is None:
            from testinfra._reaper import sweep

            sweep()
            self._owner_file = register_owner(self.run_id)
            ensure_watchdog(self.run_id)

    def start_graph(self, spec: ServiceSpec, *, shared: bool) -> tuple[Service, list[Instance], str | None]:
        """Start `spec` after its dependencies; on any failure, remove what this call started.

        A shared graph belongs to the run's owner, outlives this process and gets its own network.
        Returns the service, its instances in start order, and the network made for them, if any.
        """
        self._register()
        order = start_order(spec)
        backend = self.backend_for(order)
        placement = Placement(
            self.run_id, self.run_owner if shared else Owner.me(), detached=shared or self.keep_on_failure
        )
        own_network = f"testinfra-{self.run_id}-shared-{spec.name.replace('_', '-')}" if shared else None
        started: list[Instance] = []
        services: dict[str, Service] = {}
        try:
            if len(order) > 1:
                placement = replace(placement, network=backend.network(placement, own_network))
            for node in order:
                deps = {dep.name: services[dep.name] for dep in node.depends_on}
                instance = backend.create(node, _resolve_env(node, deps), placement)
                started.append(instance)
                services[node.name] = Service(node, instance, backend.name, deps, shared=shared)
        except BaseException:
            _remove(started)
            if own_network is not None and placement.network is not None:
                backend.remove_network(own_network)
            raise
        return services[spec.name], started, placement.network if shared else None

    def attach_graph(self, spec: ServiceSpec, backend_name: str, records: dict[str, Any]) -> Service:
        """Handles on a shared graph another process of the run started (see start_graph)."""
        backend = self.backend_named(backend_name)
        services: dict[str, Service] = {}
        for node in start_order(spec):
            deps = {dep.name: services[dep.name] for dep in node.depends_on}
            instance = backend.attach(node, records[node.name])
            services[node.name] = Service(node, instance, backend.name, deps, shared=True)
        return services[spec.name]

    def start(self, spec: ServiceSpec) -> Service:
        """Start a private instance of `spec` (and of its dependencies) for this process."""
        service, instances, _ = self.start_graph(spec, shared=False)
        self._live.append((service, instances))
        return service

    def start_shared(self, spec: ServiceSpec) -> Service:
        """The run's one instance of `spec`, started by whichever worker asks first."""
        from testinfra._shared import acquire

        self._register()
        service = acquire(self, spec)
        self._shared.append(service)
        return service

    def release(self, service: Service) -> None:
        """Tear down `service` and what was started with it (or keep it, see Service.keep)."""
        if service in self._shared:
            from testinfra._shared import release

            self._shared.remove(service)
            release(self, service)
            return
        for i, (live, instances) in enumerate(self._live):
            if live is service:
                del self._live[i]
                if service.keep:
                    self._keep(service, instances)
                else:
                    _remove(instances)
                return

    def _keep(self, service: Service, instances: list[Instance]) -> None:
        from testinfra._reaper import mark_kept

        kind = "container" if service.backend == "docker" else "process"
        for instance in instances:
            mark_kept(kind, instance.resource_id)
        self.kept.append(service)

    def close(self) -> None:
        try:
            while self._shared:
                self.release(self._shared[-1])
            while self._live:
                self.release(self._live[-1][0])
        finally:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()
            shutil.rmtree(self.logs_dir, ignore_errors=True)
            if self._owner_file is not None:
                # Nothing of ours is left: the watchdog may exit once the other owners are done.
                self._owner_file.unlink(missing_ok=True)
                self._owner_file = None


def _remove(instances: list[Instance]) -> None:
    errors: list[BaseException] = []
    for instance in reversed(instances):
        try:
            instance.remove()
        except Exception as exc:  # keep tearing down the rest, report afterwards
            errors.append(exc)
    if errors:
        raise TestinfraError(f"teardown failed for {len(errors)} service(s): {errors!r}") from errors[0]


def failure_report(services: list[Service]) -> list[tuple[str, str]]:
    """Report sections for a failed test: each service's state and last log lines."""
    sections = []
    seen: set[int] = set()
    stack = list(services)
    while stack:
        service = stack.pop()
        if id(service) in seen:
            continue
        seen.add(id(service))
        stack.extend(service.dependencies.values())
        try:
            code = service.exit_code()
            state = "running" if code is None else f"exited with code {code}"
            body = service.logs(tail=LOG_TAIL_LINES)
        except TestinfraError as exc:
            state, body = "unknown", str(exc)
        sections.append((f"testinfra: {service.name} ({service.backend}, {state}) at {service.url}", body))
    return sections
