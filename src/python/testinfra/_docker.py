"""The docker backend: a service as a container, reached on 127.0.0.1 at a Docker-chosen port."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING
from typing import Any

from testinfra._backend import Endpoint
from testinfra._backend import Placement
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ImageNotFoundError
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._pants import resolve_image
from testinfra._spec import ServiceSpec
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
    def __init__(self, spec: ServiceSpec, container: Container, client: docker.DockerClient) -> None:
        self._spec = spec
        self._client = client
        self._container = container
        self._state: dict[str, Any] = {}
        self._state_at = -_STATE_TTL
        self._endpoint = self._read_endpoint()

    @property
    def resource_id(self) -> str:
        return str(self._container.short_id)

    def record(self) -> dict[str, Any]:
        return {"id": self._container.id}

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
        return Endpoint(self._container.name or "", self._spec.port)

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
        if self._state["Status"] in ("exited", "dead"):
            code: int = self._state["ExitCode"]
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
        remove_container(self._client, self._container.id or "")


class DockerBackend:
    name = "docker"

    def __init__(self) -> None:
        self.client = connect()
        self._network: str | None = None
        self._count = 0

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> DockerInstance:
        import docker.errors

        if spec.image is None:
            raise SpecError(f"service {spec.name!r} has no image, so it cannot run in a container")
        image = resolve_image(spec.image)
        try:
            # Never pull in the middle of a test session: slow, flaky, and not what the test built.
            self.client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFoundError(
                f"image {image!r} of service {spec.name!r} is not in the Docker engine; build it "
                "(./pants package <address>) or pull it before the tests"
            ) from exc
        self._count += 1
        name = f"testinfra-{placement.run_id}-{os.getpid()}-{spec.name.replace('_', '-')}-{self._count}"
        try:
            # The stubs want an int host port; None is the SDK's documented "any free port".
            container = self.client.containers.run(  # type: ignore[call-overload]
                image,
                detach=True,
                name=name,
                labels={**owner_labels(placement.run_id, placement.owner), LABEL_SERVICE: spec.name},
                environment=env,
                # Docker picks a free host port at bind time: no race with other processes.
                ports={f"{spec.port}/tcp": (_HOST, None)},
                network=placement.network,
            )
        except _api_errors() as exc:
            # `run` is create + start: a failed start leaves a created container behind.
            remove_container(self.client, name)
            raise ServiceStartError(f"docker could not start {image!r}: {exc}", service=spec.name) from exc
        return DockerInstance(spec, container, self.client)

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> DockerInstance:
        import docker.errors

        try:
            return DockerInstance(spec, self.client.containers.get(record["id"]), self.client)
        except docker.errors.NotFound as exc:
            raise ServiceStartError("its container is gone", service=spec.name) from exc

    def network(self, placement: Placement, name: str | None = None) -> str:
        labels = owner_labels(placement.run_id, placement.owner)
        if name is not None:
            self.client.networks.create(name, driver="bridge", labels=labels)
            return name
        # This process's network, created on first use and shared by its services.
        if self._network is None:
            self._network = f"testinfra-{placement.run_id}-{os.getpid()}"
            self.client.networks.create(self._network, driver="bridge", labels=labels)
        return self._network

    def remove_network(self, name: str) -> None:
        remove_network_if_unused(self.client, name)

    def close(self) -> None:
        try:
            if self._network is not None:
                remove_network_if_unused(self.client, self._network)
                self._network = None
        finally:
            self.client.close()


def remove_container(client: docker.DockerClient, container: str) -> None:
    """Force-remove a container by id or name; one already gone, or being removed by a
    concurrent reaper, is fine."""
    import docker.errors

    try:
        client.api.remove_container(container, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def remove_network_if_unused(client: docker.DockerClient, name: str) -> bool:
    """Remove a network unless containers (kept after a failure) still use it."""
    import docker.errors

    try:
        client.api.remove_network(name)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "active endpoints" not in str(exc):
            raise
        return False
    return True
