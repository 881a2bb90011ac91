"""The docker backend: a service as a container, on a network private to this test process."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING
from typing import Any

from testinfra._backend import Endpoint
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ImageNotFoundError
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._pants import resolve_image
from testinfra._spec import ServiceSpec
from testinfra._state import LABEL_OWNER
from testinfra._state import LABEL_RUN
from testinfra._state import LABEL_SERVICE
from testinfra._state import owner_labels

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

_HOST = "127.0.0.1"
_ENGINE_TIMEOUT = 5
_STATE_TTL = 0.05


def connect() -> docker.DockerClient:
    """A client for the engine of DOCKER_HOST (or the default socket); raises if it does not answer."""
    # Imported here: process-only users never pay for the Docker SDK.
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=_ENGINE_TIMEOUT)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BackendUnavailableError(
            f"no Docker engine answers ({exc}). Start one (e.g. `dockerd &` or Docker Desktop), set "
            "DOCKER_HOST, or run services as local processes with --testinfra-backend=process"
        ) from exc
    return client


def engine_available() -> bool:
    try:
        connect().close()
    except BackendUnavailableError:
        return False
    return True


def _api_errors() -> tuple[type[Exception], ...]:
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException)


class DockerInstance:
    def __init__(
        self, backend: DockerBackend, spec: ServiceSpec, env: dict[str, str], name: str, network: str | None
    ) -> None:
        import docker.errors

        self._backend = backend
        self._spec = spec
        self._name = name
        if spec.image is None:
            raise SpecError(f"service {spec.name!r} has no image, so it cannot run in a container")
        image = resolve_image(spec.image)
        client = backend.client
        try:
            # The stubs want an int host port; None is the SDK's documented "any free port".
            self._container: Container = client.containers.run(  # type: ignore[call-overload]
                image,
                detach=True,
                name=name,
                labels={**backend.labels, LABEL_SERVICE: spec.name},
                environment=env,
                # Docker picks a free host port at bind time: no race with other processes.
                ports={f"{spec.port}/tcp": (_HOST, None)},
                network=network,
            )
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFoundError(
                f"image {image!r} of service {spec.name!r} is not in the Docker engine; build it "
                "(./pants package <address>) or pull it"
            ) from exc
        except _api_errors() as exc:
            raise ServiceStartError(f"docker could not start {image!r}: {exc}", service=spec.name) from exc
        self._state: dict[str, Any] = {}
        self._state_at = -_STATE_TTL
        self._endpoint = self._read_endpoint()

    def _reload(self) -> dict[str, Any]:
        try:
            self._container.reload()
        except _api_errors() as exc:
            raise BackendUnavailableError(
                f"lost the Docker engine while running {self._spec.name!r}: {exc}"
            ) from exc
        attrs: dict[str, Any] = self._container.attrs
        return attrs

    def _read_endpoint(self) -> Endpoint:
        attrs = self._reload()
        bindings = (attrs["NetworkSettings"]["Ports"] or {}).get(f"{self._spec.port}/tcp") or []
        if not bindings:
            # Exited before the port was published; readiness reports the exit code and logs.
            return Endpoint(_HOST, 0)
        return Endpoint(_HOST, int(bindings[0]["HostPort"]))

    def endpoint(self) -> Endpoint:
        return self._endpoint

    def peer_endpoint(self) -> Endpoint:
        return Endpoint(self._name, self._spec.port)

    def logs(self, tail: int | None = None) -> str:
        try:
            raw: bytes = self._container.logs(tail="all" if tail is None else tail)
        except _api_errors():
            return "(logs unavailable: the container is gone)"
        return raw.decode(errors="replace")

    def exit_code(self) -> int | None:
        # Readiness asks on every probe; the engine is asked at most every _STATE_TTL seconds.
        now = time.monotonic()
        if now - self._state_at >= _STATE_TTL:
            self._state = self._reload()["State"]
            self._state_at = now
        state = self._state
        if state["Status"] in ("exited", "dead"):
            code: int = state["ExitCode"]
            return code
        return None

    def stop(self, timeout: float) -> None:
        self._container.stop(timeout=max(1, round(timeout)))
        self._state_at = -_STATE_TTL

    def kill(self) -> None:
        self._state_at = -_STATE_TTL
        if self.exit_code() is None:
            self._container.kill()
            self._container.wait()
            self._state_at = -_STATE_TTL

    def start(self) -> None:
        self._container.start()
        self._state_at = -_STATE_TTL
        # The host port is chosen anew on every start; peers keep using the container name.
        self._endpoint = self._read_endpoint()

    def remove(self) -> None:
        import docker.errors

        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass


class DockerBackend:
    name = "docker"

    def __init__(self, run_id: str) -> None:
        self.client = connect()
        self.labels = owner_labels(run_id)
        self._prefix = f"testinfra-{run_id}-{os.getpid()}"
        self._network: str | None = None
        self._count = 0

    def network_name(self) -> str:
        # Created on first use and shared by every service of this process, so peers resolve by name.
        if self._network is None:
            self.client.networks.create(self._prefix, driver="bridge", labels=self.labels)
            self._network = self._prefix
        return self._network

    def create(self, spec: ServiceSpec, env: dict[str, str], *, networked: bool) -> DockerInstance:
        self._count += 1
        name = f"{self._prefix}-{spec.name.replace('_', '-')}-{self._count}"
        # A service alone stays on the default bridge: joining a user-defined network costs ~45 ms.
        return DockerInstance(self, spec, env, name, self.network_name() if networked else None)

    def close(self) -> None:
        try:
            # Anything of ours still there (a start that failed half-way) goes before the network.
            owner = f"{LABEL_OWNER}={self.labels[LABEL_OWNER]}"
            run = f"{LABEL_RUN}={self.labels[LABEL_RUN]}"
            for container in self.client.containers.list(all=True, filters={"label": [owner, run]}):
                container.remove(force=True)
            if self._network is not None:
                self.client.networks.get(self._network).remove()
                self._network = None
        finally:
            self.client.close()
