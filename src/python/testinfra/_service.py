"""Service handles, and the manager that starts, tracks and tears them down."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from testinfra._backend import Backend
from testinfra._backend import Endpoint
from testinfra._backend import Instance
from testinfra._errors import BackendUnavailableError
from testinfra._errors import SpecError
from testinfra._errors import TestinfraError
from testinfra._readiness import LOG_TAIL_LINES
from testinfra._readiness import wait_until_ready
from testinfra._spec import ServiceSpec
from testinfra._spec import start_order
from testinfra._watchdog import ensure_watchdog
from testinfra._watchdog import register_owner
from testinfra._watchdog import run_dir

BACKENDS = ("auto", "docker", "process")


class Service:
    """A running service, as the tests see it."""

    def __init__(
        self, spec: ServiceSpec, instance: Instance, backend: str, dependencies: dict[str, Service]
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.dependencies = dependencies
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

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after the spec's stop_timeout)."""
        self._instance.stop(self.spec.stop_timeout)

    def kill(self) -> None:
        """Kill at once, as a crash would."""
        self._instance.kill()

    def restart(self) -> None:
        """Stop if running, start again at the same peer address, and wait until ready."""
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

    def __init__(self, run_id: str, backend: str = "auto", require_docker: bool = False) -> None:
        if backend not in BACKENDS:
            raise SpecError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.run_id = run_id
        self.requested_backend = backend
        self.require_docker = require_docker
        self.logs_dir = run_dir(run_id) / "logs" / str(os.getpid())
        self._backends: dict[str, Backend] = {}
        self._live: list[tuple[Service, list[Instance]]] = []
        self._owner_file: Path | None = None

    def backend_for(self, spec: ServiceSpec) -> Backend:
        name = self.requested_backend
        if name == "auto":
            name = self._auto_choice(spec)
        if name not in self._backends:
            if name == "docker":
                from testinfra._docker import DockerBackend

                self._backends[name] = DockerBackend(self.run_id)
            else:
                from testinfra._process import ProcessBackend

                self.logs_dir.mkdir(parents=True, exist_ok=True)
                self._backends[name] = ProcessBackend(self.run_id, self.logs_dir)
        return self._backends[name]

    def _auto_choice(self, spec: ServiceSpec) -> str:
        from testinfra._docker import engine_available

        if "docker" in self._backends or (spec.image is not None and engine_available()):
            return "docker"
        if self.require_docker:
            raise BackendUnavailableError(
                "Docker is required here (TESTINFRA_REQUIRE_DOCKER / --testinfra-require-docker) but no "
                "engine answers; start one, or unset the requirement to run services as local processes"
            )
        if spec.command is None:
            raise BackendUnavailableError(
                f"service {spec.name!r} has only an image and no Docker engine answers; start an engine "
                "or give the spec a command to run it as a local process"
            )
        return "process"

    def start(self, spec: ServiceSpec) -> Service:
        """Start `spec` after its dependencies; on any failure, stop what this call started."""
        if self._owner_file is None:
            # Before the first resource exists, so the watchdog knows whose it will be.
            self._owner_file = register_owner(self.run_id)
            ensure_watchdog(self.run_id)
        started: list[Instance] = []
        services: dict[str, Service] = {}
        try:
            order = start_order(spec)
            for node in order:
                backend = self.backend_for(node)
                deps = {dep.name: services[dep.name] for dep in node.depends_on}
                instance = backend.create(node, _resolve_env(node, deps), networked=len(order) > 1)
                started.append(instance)
                services[node.name] = Service(node, instance, backend.name, deps)
        except BaseException:
            self._remove(started)
            raise
        service = services[spec.name]
        self._live.append((service, started))
        return service

    def release(self, service: Service) -> None:
        """Tear down `service` and the dependencies started with it."""
        for i, (live, instances) in enumerate(self._live):
            if live is service:
                del self._live[i]
                self._remove(instances)
                return

    def _remove(self, instances: list[Instance]) -> None:
        errors: list[BaseException] = []
        for instance in reversed(instances):
            try:
                instance.remove()
            except Exception as exc:  # keep tearing down the rest, report afterwards
                errors.append(exc)
        if errors:
            raise TestinfraError(f"teardown failed for {len(errors)} service(s): {errors!r}") from errors[0]

    def live(self) -> list[Service]:
        return [service for service, _ in self._live]

    def close(self) -> None:
        try:
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
