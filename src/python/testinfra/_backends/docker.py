"""The docker backend: a service as a container, reached on 127.0.0.1 at a Docker-chosen port, or
(host_network) in the host's network namespace, listening on a port testinfra reserved for it.

Every call into the Docker SDK goes through `_engine_errors`, the one place where its errors
become testinfra errors: an engine that does not answer is BackendUnavailableError, a container
removed from outside is ServiceGoneError, anything else the engine refuses is ServiceError.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import secrets
import socket
import threading
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import ParamSpec
from typing import TypedDict
from typing import TypeVar

from testinfra._backends.base import Endpoint
from testinfra._backends.base import Placement
from testinfra._backends.base import Resource
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ImageNotFoundError
from testinfra._errors import ServiceError
from testinfra._errors import ServiceGoneError
from testinfra._errors import ServiceStartError
from testinfra._owner import Owner
from testinfra._pants import address_hint
from testinfra._pants import locate_image
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._settings import Settings
from testinfra._spec import ServiceSpec
from testinfra._spec import render
from testinfra._statedir import StateDir
from testinfra._statedir import locked

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

_HOST = "127.0.0.1"
_ENGINE_TIMEOUT = 10
_KEPT_SUFFIX = "-kept"
_UNKNOWN_EXIT = -1
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"

P = ParamSpec("P")
R = TypeVar("R")


class ContainerRecord(TypedDict):
    id: str


@contextlib.contextmanager
def _engine_errors(doing: str, service: str | None = None) -> Iterator[None]:
    """Map the Docker SDK's errors (and its HTTP layer's) to testinfra's, once."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFoundError(f"{doing}: {exc.explanation}") from exc
    except docker.errors.NotFound as exc:
        if service is None:
            raise ServiceError(f"{doing}: {exc.explanation}", service="?") from exc
        raise ServiceGoneError(
            f"its container was removed from outside testinfra ({doing})", service=service
        ) from exc
    except docker.errors.APIError as exc:
        raise ServiceError(
            f"the Docker engine refused {doing}: {exc.explanation}", service=service or "?"
        ) from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BackendUnavailableError(
            f"lost the Docker engine while {doing}: {exc}. Is dockerd still running (`docker info`)?"
        ) from exc


def _mapped(doing: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run an instance method under _engine_errors, naming the instance's service."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            instance = args[0]
            assert isinstance(instance, DockerInstance)
            with _engine_errors(doing, instance.spec.name):
                return method(*args, **kwargs)

        return call

    return wrap


def connect() -> docker.DockerClient:
    """A client for the engine of DOCKER_HOST (or the default socket); raises if it does not answer.

    The one probe for "is there an engine?": the backend, the reaper, the plugin's docker marker
    and `doctor` all ask here.
    """
    import docker
    import docker.errors
    import requests

    host = os.environ.get("DOCKER_HOST", _DEFAULT_SOCKET)
    if host.startswith("unix://") and not os.path.exists(host[len("unix://") :]):
        problem = f"the engine's socket {host[len('unix://'):]} does not exist"
    else:
        problem = None
        # The SDK leaks its socket when a connection fails; its warning is not ours to show.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            client = None
            try:
                client = docker.from_env(timeout=_ENGINE_TIMEOUT)
                if client.api.base_url.startswith("http+docker://"):
                    # A local socket has no proxy: without this, every call scans the whole
                    # environment for proxy settings, the larger part of its cost in this process.
                    client.api.trust_env = False
                client.ping()
            except (docker.errors.DockerException, requests.RequestException) as exc:
                problem = str(exc)
                if client is not None:
                    client.close()
            if problem is not None:
                gc.collect()  # the failed connection's socket is freed here, under the filter
        if problem is None and client is not None:
            return client
    raise BackendUnavailableError(
        f"no Docker engine answers ({problem}). Start one (e.g. `dockerd &` or Docker Desktop), set "
        "DOCKER_HOST, or run services as local processes with --testinfra-backend=process"
    )


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    try:
        connect().close()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def host_network_problem(client: docker.DockerClient) -> str | None:
    """Why the engine's host network is not this process's network, or None when it is.

    An engine on another machine or in a VM (a remote DOCKER_HOST, Docker Desktop, colima) names
    another host; a rootless engine keeps a network namespace of its own.
    """
    with _engine_errors("asking the engine where it runs"):
        info = client.info()
    if any("rootless" in option for option in info.get("SecurityOptions") or ()):
        return "the engine is rootless: its host network is a namespace of its own"
    engine_host, here = info.get("Name"), socket.gethostname()
    if engine_host != here:
        return f"the engine runs on host {engine_host!r}, not on this one ({here!r})"
    return None


def _nanoseconds(stamp: str) -> int:
    # Docker's RFC 3339 timestamps carry up to nine fraction digits, with trailing zeros dropped.
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = int(datetime.fromisoformat(seconds + "+00:00").timestamp())
    return whole * 1_000_000_000 + int((fraction + "000000000")[:9])


class DockerInstance:
    def __init__(
        self,
        spec: ServiceSpec,
        container: Container,
        client: docker.DockerClient,
        network: str | None,
        *,
        host_port: int | None = None,
        reservation: PortReservation | None = None,
        fresh: bool = False,
    ) -> None:
        self.spec = spec
        self._container = container
        self._client = client
        self._network = network
        # With host_network: the port it listens on, and (in the process that made it) its reservation.
        self._host_port = host_port
        self._reservation = reservation
        # (`fresh`: the container was just inspected; no need to ask the engine again.)
        self._endpoint = self._read_endpoint(reload=not fresh)

    @property
    def resource_id(self) -> str:
        return str(self._container.short_id)

    def record(self) -> dict[str, Any]:
        return {"id": self._container.id, "network": self._network, "host_port": self._host_port}

    def _reload(self) -> dict[str, Any]:
        self._container.reload()
        attrs: dict[str, Any] = self._container.attrs
        return attrs

    @_mapped("reading its published port")
    def _read_endpoint(self, reload: bool = True) -> Endpoint:
        if self._host_port is not None:
            return Endpoint(_HOST, self._host_port)
        attrs = self._reload() if reload else self._container.attrs
        bindings = (attrs["NetworkSettings"]["Ports"] or {}).get(f"{self.spec.port}/tcp") or []
        if not bindings:
            # Exited before the port was published; readiness reports the exit code and logs.
            return Endpoint(_HOST, 0)
        return Endpoint(_HOST, int(bindings[0]["HostPort"]))

    def endpoint(self) -> Endpoint:
        return self._endpoint

    def peer_endpoint(self) -> Endpoint:
        if self._host_port is not None:
            return self._endpoint
        return Endpoint(self._container.name or "", self.spec.port)

    @_mapped("reading its address")
    def direct_address(self) -> tuple[str, int]:
        if self._host_port is not None:
            return _HOST, self._host_port
        networks = self._reload()["NetworkSettings"]["Networks"] or {}
        for network in networks.values():
            if network.get("IPAddress"):
                return network["IPAddress"], self.spec.port
        return _HOST, 0  # not attached anywhere (yet): nothing to connect to

    def logs(self, tail: int | None = None) -> str:
        try:
            with _engine_errors("reading its logs", self.spec.name):
                raw: bytes = self._container.logs(tail="all" if tail is None else tail)
        except ServiceError as exc:
            return f"(logs unavailable: {exc})"
        return raw.decode(errors="replace")

    @_mapped("reading its logs")
    def read_logs(self, cursor: Any) -> tuple[str, Any]:
        # The engine filters by time, so each probe reads only what is new; lines at the boundary
        # second come again and are dropped by their nanosecond timestamps.
        since_ns = cursor if cursor is not None else self._started_ns()
        raw: bytes = self._container.logs(timestamps=True, since=since_ns / 1e9)
        fresh = []
        for line in raw.decode(errors="replace").splitlines(keepends=True):
            stamp, _, text = line.partition(" ")
            try:
                at = _nanoseconds(stamp)
            except ValueError:
                continue
            if at > since_ns or (cursor is None and at == since_ns):
                fresh.append(text)
                since_ns = max(since_ns, at)
        return "".join(fresh), since_ns

    def _started_ns(self) -> int:
        return _nanoseconds(self._reload()["State"]["StartedAt"]) - 1

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        # {host} and {port} are the service's own address inside its container, so one command
        # (e.g. `redis-cli -h {host} -p {port} ping`) works here and for a local process.
        values = {"host": _HOST, "port": str(self._host_port or self.spec.port)}
        command = [render(arg, lambda peer, name: values.get(name, "")) for arg in argv]
        outcome: list[tuple[int, str]] = []
        lost: list[BackendUnavailableError] = []

        def execute() -> None:
            try:
                with _engine_errors("running a command in it", self.spec.name):
                    code, output = self._container.exec_run(command)
                    assert isinstance(output, bytes)  # not streamed
                    outcome.append(
                        (code if code is not None else _UNKNOWN_EXIT, output.decode(errors="replace"))
                    )
            except BackendUnavailableError as exc:
                lost.append(exc)  # not a command that failed: raised below
            except ServiceError:
                pass  # the engine refused the exec (e.g. the container is not running): it did not run

        # The SDK has no timeout for exec: wait for it on a thread, and give up at `timeout`.
        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        worker.join(timeout)
        if lost:
            raise lost[0]
        return outcome[0] if outcome else (_UNKNOWN_EXIT, f"{command} did not finish in {timeout}s")

    @_mapped("reading its state")
    def exit_code(self) -> int | None:
        state = self._reload()["State"]
        if state["Status"] in ("exited", "dead"):
            code: int = state["ExitCode"]
            return code
        return None

    @_mapped("stopping it")
    def stop(self, timeout: float) -> None:
        self._container.stop(timeout=max(1, round(timeout)))

    @_mapped("killing it")
    def kill(self) -> None:
        if self.exit_code() is None:
            self._container.kill()
            self._container.wait()

    @_mapped("starting it again")
    def start(self) -> None:
        self._container.start()
        # The host port is chosen anew on every start; peers keep using the container name.
        self._endpoint = self._read_endpoint()

    @_mapped("removing it")
    def remove(self) -> None:
        try:
            _remove_container(self._client, self._container.id or "")
        finally:
            # Even if the removal failed: a port something still listens on is never handed out.
            if self._reservation is not None:
                self._reservation.release()

    @_mapped("marking it kept")
    def keep(self) -> None:
        # Labels cannot change after creation; the name can, and every engine user sees it.
        name = self._container.name or ""
        if not name.endswith(_KEPT_SUFFIX):
            self._container.rename(name + _KEPT_SUFFIX)


class DockerBackend:
    name = "docker"
    needs = "an image"

    def __init__(self, settings: Settings, image_roots: Sequence[Path] = ()) -> None:
        self.client = connect()
        self._state = StateDir(settings.state_dir)
        self._ports = settings.port_range
        # Ports this process reserved for containers on the host's network: whichever handle of
        # this process removes one (its creator's, or one attached to it later) releases its port.
        self._reservations: dict[int, PortReservation] = {}
        self._label = settings.label
        self._image_roots = tuple(image_roots)
        # Numbers this process's containers; next() on it is atomic, and pools start from threads.
        self._count = itertools.count(1)

    def supports(self, spec: ServiceSpec) -> bool:
        return spec.image is not None

    @functools.cached_property
    def host_network(self) -> bool:
        return host_network_problem(self.client) is None

    def identity(self, spec: ServiceSpec) -> str:
        assert spec.image is not None
        image, archive = locate_image(spec.image, self._image_roots)
        if not self._present(image, spec):
            self._load(image, archive, spec)
        with _engine_errors(f"looking up image {image!r}", spec.name):
            image_id: str = self.client.images.get(image).id or image
        return image_id

    def pinned(self, spec: ServiceSpec) -> ServiceSpec:
        return replace(spec, image=self.identity(spec))

    def _present(self, image: str, spec: ServiceSpec) -> bool:
        try:
            with _engine_errors(f"looking up image {image!r}", spec.name):
                self.client.images.get(image)
        except ImageNotFoundError:
            return False
        return True

    def _load(self, image: str, archive: Path | None, spec: ServiceSpec) -> None:
        """Load `image` from the archive Pants left beside its docker-info.json (a machine that
        took the archive from a remote cache never built the image); ImageNotFoundError if none."""
        if archive is None:
            raise ImageNotFoundError(
                f"image {image!r} of service {spec.name!r} is not in the Docker engine; build it "
                "(./pants package <address>) or pull it before the tests"
                + address_hint(image, self._image_roots)
            )
        if not archive.is_file():
            raise ImageNotFoundError(
                f"image {image!r} of service {spec.name!r} is not in the engine, and its archive {archive} is missing"
            )
        # One process loads it; the others wait, then find it there.
        with locked(self._state.sub("images") / f"{image.replace(':', '-')}.lock"):
            if self._present(image, spec):
                return
            with _engine_errors(f"loading {archive}", spec.name), archive.open("rb") as stream:
                self.client.images.load(stream)
            if not self._present(image, spec):
                # A truncated or foreign archive must fail here, not start the wrong image later.
                raise ImageNotFoundError(f"loading {archive} did not give image {image!r}; rebuild it")

    def _labels(self, placement: Placement, **extra: str) -> dict[str, str]:
        return {
            self._label: "1",
            f"{self._label}.run": placement.run_id,
            f"{self._label}.owner": str(placement.owner),
            f"{self._label}.uid": str(os.geteuid()),
            # What testinfra 0.1 reads to judge the owner: without these, a 0.1 session on the same
            # engine would see every container of ours as an orphan and remove it.
            f"{self._label}.owner-pid": str(placement.owner.pid),
            f"{self._label}.owner-start": str(placement.owner.start),
            **{f"{self._label}.{key}": value for key, value in extra.items()},
        }

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> DockerInstance:
        reservation = None
        if spec.host_network:
            reservation = reserve_port(self._state, self._ports)
            self._reservations = {port: held for port, held in self._reservations.items() if held.held}
            self._reservations[reservation.port] = reservation
        try:
            return self._create(spec, env, placement, reservation)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise

    def _create(
        self,
        spec: ServiceSpec,
        env: dict[str, str],
        placement: Placement,
        reservation: PortReservation | None,
    ) -> DockerInstance:
        assert spec.image is not None
        image, archive = locate_image(spec.image, self._image_roots)
        name = f"testinfra-{placement.run_id}-{os.getpid()}-{spec.name.replace('_', '-')}-{next(self._count)}"
        api = self.client.api
        networking = None
        tmpfs = {path: "" for path in spec.tmpfs}
        if reservation is not None:
            # No namespace, bridge or proxy to set up; nothing to publish. Outside testinfra, a
            # process could still take the reserved port before the service binds it: the service
            # then exits, and its start fails with its log.
            values = {"host": _HOST, "port": str(reservation.port)}
            ports = None
            host_config = api.create_host_config(network_mode="host", tmpfs=tmpfs)
        else:
            # All of the container's own interfaces: Docker's proxy reaches it at its address.
            values = {"host": "0.0.0.0", "port": str(spec.port)}
            ports = [spec.port]
            if placement.network is not None:
                # An alias keeps the name peers use working when the container is renamed (kept).
                endpoint = api.create_endpoint_config(aliases=[name])
                networking = api.create_networking_config({placement.network: endpoint})  # type: ignore[arg-type]
            host_config = api.create_host_config(
                # Docker picks a free host port at bind time: no race with other processes.
                port_bindings={spec.port: (_HOST, None)},
                network_mode=placement.network,
                tmpfs=tmpfs,
            )
        command = None
        if spec.args is not None:
            command = [render(arg, lambda peer, field: values[field]) for arg in spec.args]

        def create() -> dict[str, Any]:
            with _engine_errors(f"creating a container of {image!r}", spec.name):
                # The low-level create never pulls (the SDK's `run` would): pulling mid-session is
                # slow, flaky, and not what the test built.
                created: dict[str, Any] = api.create_container(
                    image,
                    command=command,
                    name=name,
                    labels=self._labels(placement, service=spec.name),
                    environment=env,
                    ports=ports,
                    host_config=host_config,
                    networking_config=networking,
                    detach=True,
                )
            return created

        try:
            try:
                created = create()
            except ImageNotFoundError:
                self._load(image, archive, spec)  # (raises when there is nothing to load)
                created = create()
        except ServiceError as exc:  # the engine rejects the reference itself
            raise ImageNotFoundError(
                f"image {image!r} of service {spec.name!r} is not usable: {exc}"
            ) from exc
        try:
            with _engine_errors(f"starting {image!r}", spec.name):
                api.start(created["Id"])
                container = self.client.containers.prepare_model(api.inspect_container(created["Id"]))
        except ServiceError as exc:
            with contextlib.suppress(ServiceError, BackendUnavailableError):
                with _engine_errors("removing a container that failed to start"):
                    _remove_container(self.client, created["Id"])
            raise ServiceStartError(str(exc), service=spec.name) from exc
        network = None if reservation is not None else placement.network
        port = reservation.port if reservation is not None else None
        return DockerInstance(
            spec, container, self.client, network, host_port=port, reservation=reservation, fresh=True
        )

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> DockerInstance:
        with _engine_errors("attaching to it", spec.name):
            container = self.client.containers.get(record["id"])
            port = record.get("host_port")
            return DockerInstance(
                spec,
                container,
                self.client,
                record.get("network"),
                host_port=port,
                reservation=self._reservations.get(port) if port is not None else None,
            )

    def create_network(self, purpose: str, placement: Placement) -> str:
        # A random part: the engine accepts duplicate network names, and a name another (dead)
        # process left behind would make every later lookup by name ambiguous.
        name = f"testinfra-{placement.run_id}-{purpose}-{secrets.token_hex(3)}"
        with _engine_errors(f"creating network {name}"):
            network = self.client.networks.create(name, driver="bridge", labels=self._labels(placement))
        return str(network.id)

    def remove_network(self, network: str) -> None:
        with _engine_errors(f"removing network {network}"):
            _remove_network_if_unused(self.client, network)

    def _resource(self, kind: str, item: dict[str, Any], name: str) -> Resource:
        labels = item.get("Labels") or {}
        owner_label = labels.get(f"{self._label}.owner", "")
        created = item.get("Created")
        return Resource(
            backend=self.name,
            kind=kind,
            id=item["Id"][:12],
            name=labels.get(f"{self._label}.service", name),
            run=labels.get(f"{self._label}.run", "?"),
            owner=Owner.parse(owner_label),
            created=float(created) if isinstance(created, int | float) else None,
            kept=name.endswith(_KEPT_SUFFIX),
        )

    def resources(self, run: str | None = None) -> list[Resource]:
        label = f"{self._label}.run={run}" if run else self._label
        with _engine_errors("listing testinfra containers and networks"):
            # The low-level lists: the high-level ones inspect each item in turn, and fail when a
            # concurrent session removes one in between.
            containers = self.client.api.containers(all=True, filters={"label": label})
            networks = self.client.api.networks(filters={"label": label})
        found = [self._resource("container", c, c["Names"][0].lstrip("/")) for c in containers]
        found += [self._resource("network", n, n["Name"]) for n in networks]
        return found

    def remove(self, resource: Resource) -> bool:
        with _engine_errors(f"removing {resource.kind} {resource.id}"):
            if resource.kind == "container":
                _remove_container(self.client, resource.id)
                return True
            return _remove_network_if_unused(self.client, resource.id)

    def close(self) -> None:
        self.client.close()


def _remove_container(client: docker.DockerClient, container: str) -> None:
    """Force-remove a container; one already gone, or being removed by a concurrent reaper, is fine."""
    import docker.errors

    try:
        client.api.remove_container(container, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def _remove_network_if_unused(client: docker.DockerClient, network: str) -> bool:
    """Remove a network unless containers (kept after a failure) still use it."""
    import docker.errors

    try:
        client.api.remove_network(network)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "active endpoints" not in str(exc):
            raise
        return False
    return True
