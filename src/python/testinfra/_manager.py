"""Manager: starts services (dependencies first), shares them across a run, tears them down.

Public: `start(spec)`, `take(spec)`, `expect(spec, uses)`, `start_shared(spec)`,
`start_lease(spec)`, `release(service)`, `close()`, and `run_id`, `settings`, `kept`. Everything a backend does sits
behind the Backend protocol; everything about ownership (owner sets, the watchdog, the sweep) is
in _owner, _watchdog and _reaper. Start cost is hidden where it can be: the services of a graph
get ready side by side, warm pools start per-test instances ahead (_pool), used ones are removed
in the background, and joining the run's watchdog overlaps the first start.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from testinfra._backends import KINDS
from testinfra._backends import BackendKind
from testinfra._backends import open_backend
from testinfra._backends.base import Backend
from testinfra._backends.base import Instance
from testinfra._backends.base import Placement
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._errors import TestinfraError
from testinfra._lease import MAX_SPARES
from testinfra._lease import keeper_alive
from testinfra._lease import lease_key
from testinfra._lease import lease_run
from testinfra._lease import remove_lease
from testinfra._lease import spares
from testinfra._lease import start_keeper
from testinfra._lease import start_spare
from testinfra._owner import Owner
from testinfra._owner import OwnerSet
from testinfra._pool import Pool
from testinfra._reaper import reap_run
from testinfra._reaper import sweep
from testinfra._service import Service
from testinfra._settings import Settings
from testinfra._shared import Slot
from testinfra._shared import SlotRecord
from testinfra._spec import ServiceSpec
from testinfra._spec import render
from testinfra._spec import start_order
from testinfra._statedir import StateDir
from testinfra._statedir import touch
from testinfra._watchdog import ensure_watchdog
from testinfra._watchdog import mark_backend

T = TypeVar("T")
# In a run's directory: present once a process other than the run's owner made resources.
_OTHERS = "others"


def _in_thread(call: Callable[[], T]) -> Future[T]:
    """Run `call` on a thread of its own (not on the executor, whose jobs wait for these)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="testinfra-start").start()
    return future


@dataclass
class _Graph:
    """A service and everything started with it, in start order."""

    backend: Backend
    instances: list[Instance] = field(default_factory=list)
    service: Service | None = None
    # A network made for this graph alone (shared graphs), removed with it.
    network: str | None = None
    # A spare taken from the last run (see _lease): its keeper removes it once we let go.
    slot: Slot | None = None


def _resolve_env(spec: ServiceSpec, deps: dict[str, Service]) -> dict[str, str]:
    def peer_value(peer: str | None, name: str) -> str:
        assert peer is not None  # validated by ServiceSpec
        return str(getattr(deps[peer].peer, name))

    return {key: render(value, peer_value) for key, value in spec.env.items()}


def _bridged(spec: ServiceSpec) -> ServiceSpec:
    """`spec` and its dependencies off the host's network: where the engine's host network is not
    ours, they run on a network of their own, and their args' {host} and {port} follow."""
    deps = tuple(_bridged(dep) for dep in spec.depends_on)
    return replace(spec, host_network=False, depends_on=deps)


class Manager:
    """Everything one test process started; `close()` stops it all, whatever happened before."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        run_id: str | None = None,
        run_owner: Owner | None = None,
        image_roots: Sequence[Path] = (),
        join_run: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        # The process that began the run; shared services belong to it, not to a worker.
        self.run_owner = run_owner or Owner.me()
        self.kept: list[Service] = []
        self._state = StateDir(self.settings.state_dir)
        self._image_roots = tuple(image_roots)
        # False in a lease's keeper, whose resources belong to it and not to a test run.
        self._join_run = join_run
        self._backends: dict[str, Backend] = {}
        self._unavailable: dict[str, BackendUnavailableError] = {}
        self._private_networks: dict[str, str] = {}
        self._live: list[_Graph] = []
        self._pooled: list[_Graph] = []
        # Services several processes use: shared (this run's) and leased (the machine's).
        self._shared: list[tuple[Service, Slot]] = []
        self._pools: dict[str, Pool[_Graph]] = {}
        # Per spec fingerprint: the spec, and how many instances this session's tests took.
        self._taken: dict[str, tuple[ServiceSpec, int]] = {}
        self._lease_keys: dict[str, tuple[Backend, str]] = {}
        self._began = time.time()
        self._registration: Future[None] | None = None
        self._removals: list[Future[None]] = []
        # Pools fill and used instances go away on these threads while the tests run.
        self._executor = ThreadPoolExecutor(self.settings.pool_depth + 2, thread_name_prefix="testinfra-pool")
        # Guards the state above against those threads.
        self._lock = threading.RLock()

    # -- backends ------------------------------------------------------------------------------

    def _backend(self, kind: BackendKind) -> Backend:
        with self._lock:
            if kind in self._unavailable:
                raise self._unavailable[kind]
            if kind not in self._backends:
                try:
                    self._backends[kind] = open_backend(kind, self.settings, self._state, self._image_roots)
                except BackendUnavailableError as exc:
                    self._unavailable[kind] = exc  # asked once per manager, not once per service
                    raise
            return self._backends[kind]

    def _recorded_backend(self, record: SlotRecord) -> Backend:
        for kind in KINDS:
            if record.get("backend") == kind:
                return self._backend(kind)
        raise TestinfraError(f"a shared-service record names an unknown backend {record.get('backend')!r}")

    def _backend_for(self, order: list[ServiceSpec]) -> Backend:
        """One backend for a whole graph: containers cannot reach local processes by name."""
        requested = self.settings.backend
        backend = self._auto_choice(order) if requested == "auto" else self._backend(requested)
        missing = [spec.name for spec in order if not backend.supports(spec)]
        if missing:
            raise SpecError(
                f"backend {backend.name!r} needs {backend.needs} for every service; {missing} have none"
            )
        return backend

    def _auto_choice(self, order: list[ServiceSpec]) -> Backend:
        try:
            docker = self._backend("docker")
        except BackendUnavailableError as exc:
            if self.settings.require_docker:
                raise BackendUnavailableError(
                    f"Docker is required here (TESTINFRA_REQUIRE_DOCKER / --testinfra-require-docker): {exc}"
                ) from exc
        else:
            if all(docker.supports(spec) for spec in order):
                return docker
        process = self._backend("process")
        if not all(process.supports(spec) for spec in order):
            raise BackendUnavailableError(
                f"service {order[-1].name!r} needs a Docker engine (some of its services have no command) "
                "and none answers; start an engine or give every spec a command to run as local processes"
            )
        return process

    # -- ownership -----------------------------------------------------------------------------

    def _run_owners(self) -> OwnerSet:
        return OwnerSet(self._state.sub("runs", self.run_id, "owners"))

    def _register(self, backend: Backend, owner: Owner) -> Future[None]:
        """Before this process's first resource: join the run's owners, then, on a thread beside
        the first start, sweep orphans and make sure the run's watchdog runs. A start waits for
        that before it returns its service.

        Here rather than at session start, so sessions that start no service pay nothing.
        """
        with self._lock:
            if not self._join_run:
                joined: Future[None] = Future()
                joined.set_result(None)
                return joined
            if self._registration is None:
                self._run_owners().add(Owner.me())
                # With the backends in use: a process-only session does not connect to Docker for it.
                backends = list(self._backends.values())

                def join() -> None:
                    sweep(self.settings, self._state, backends)
                    ensure_watchdog(self.settings, self._state, self.run_id)

                self._registration = _in_thread(join)
            mark_backend(self._state, self.run_id, backend.name)
            if Owner.me() != self.run_owner:
                # Another process of the run (an xdist worker) makes resources: at its end the run's
                # owner must look for what they left, not only release its own.
                touch(self._state.run_dir(self.run_id) / _OTHERS)
            if owner == self.run_owner:
                # The run's owner owns shared services: the watchdog must watch it too.
                self._run_owners().add(self.run_owner)
            return self._registration

    # -- starting ------------------------------------------------------------------------------

    def _start_graph(
        self,
        spec: ServiceSpec,
        *,
        placement: Placement | None = None,
        progress: Callable[[_Graph], None] | None = None,
    ) -> _Graph:
        """Start `spec` and its dependencies; on any failure, remove what this call started.

        A service is created once its dependencies are ready, or, if its spec does not need that
        (`wait_for_dependencies=False`), as soon as they exist and their addresses are known; the
        readiness checks of a graph run side by side. `progress` sees the graph after each step.
        Without a `placement`, the graph is this process's own; with one (a shared service, a
        lease), it gets a network of its own.
        """
        order = start_order(spec)
        backend = self._backend_for(order)
        if not backend.host_network and any(node.host_network for node in order):
            order = start_order(spec := _bridged(spec))
        own_network = placement is not None
        if placement is None:
            placement = Placement(self.run_id, Owner.me(), detached=self.settings.keep_on_failure)
        registration = self._register(backend, placement.owner)
        graph = _Graph(backend)
        services: dict[str, Service] = {}
        ready: dict[str, Future[float]] = {}
        try:
            # Services on the host's network need none.
            if sum(not node.host_network for node in order) > 1:
                if own_network:
                    graph.network = backend.create_network("shared", placement)
                    network = graph.network
                else:
                    network = self._private_network(backend, placement)
                placement = replace(placement, network=network)
                if progress:
                    progress(graph)
            for node in order:
                if node.wait_for_dependencies:
                    for dep in node.depends_on:
                        ready[dep.name].result()
                deps = {dep.name: services[dep.name] for dep in node.depends_on}
                graph.instances.append(backend.create(node, _resolve_env(node, deps), placement))
                if progress:
                    progress(graph)
                services[node.name] = Service(
                    node, graph.instances[-1], backend.name, deps, shared=own_network
                )
                if node is not spec:
                    ready[node.name] = _in_thread(services[node.name].wait_ready)
            services[spec.name].wait_ready()  # the last one on this thread
            for future in ready.values():
                future.result()
            registration.result()
        except BaseException:
            self._teardown(graph)
            raise
        graph.service = services[spec.name]
        return graph

    def _private_network(self, backend: Backend, placement: Placement) -> str | None:
        """This process's network for its private graphs, made on first use."""
        with self._lock:
            if backend.name not in self._private_networks:
                network = backend.create_network("private", placement)
                if network is None:
                    return None
                self._private_networks[backend.name] = network
            return self._private_networks[backend.name]

    def start(self, spec: ServiceSpec) -> Service:
        """Start a private instance of `spec` (and of its dependencies) for this process."""
        graph = self._start_graph(spec)
        with self._lock:
            self._live.append(graph)
        assert graph.service is not None
        return graph.service

    def _pool(self, spec: ServiceSpec) -> Pool[_Graph]:
        with self._lock:
            if spec.fingerprint not in self._pools:
                self._pools[spec.fingerprint] = Pool(
                    lambda: self._take_spare(spec) or self._start_graph(spec),
                    self._teardown,
                    self._executor,
                    self.settings.pool_depth,
                )
            return self._pools[spec.fingerprint]

    def take(self, spec: ServiceSpec) -> Service:
        """A never-used private instance of `spec` for one test, from its warm pool.

        Release it when the test is done: it is removed in the background.
        """
        graph = self._pool(spec).take()
        with self._lock:
            self._pooled.append(graph)
            self._taken[spec.fingerprint] = (spec, self._taken.get(spec.fingerprint, (spec, 0))[1] + 1)
        assert graph.service is not None
        return graph.service

    def _take_spare(self, spec: ServiceSpec) -> _Graph | None:
        """A never-used graph of `spec` the last run left (see _lease), if warm reuse is on."""
        if not self.settings.reuse_ttl:
            return None
        for slot in spares(self._state, self._lease_key(spec)[1]):
            with slot.locked():  # (waits while its keeper is still starting it)
                record = slot.read()
                if record is None or record.get("used") or not keeper_alive(record.get("keeper")):
                    continue
                graph = self._attach_graph(spec, record, shared=False) if record.get("complete") else None
                # Taken, or found dead (its keeper then removes it at once).
                slot.write({**record, "used": True})
                if graph is None:
                    continue
                slot.users.add(Owner.me())
            graph.slot = slot
            return graph
        return None

    def _leave_spares(self) -> None:
        """With warm reuse on, leave never-used graphs for the next run: as many of each spec as
        this process took (at most MAX_SPARES, less those an earlier run left that nobody took),
        started by their keepers after this process is gone."""
        if not self.settings.reuse_ttl:
            return
        for spec, taken in self._taken.values():
            try:
                backend, key = self._lease_key(spec)
                pinned = self._pinned(spec, backend)
                if pinned is None:
                    continue  # (a local process's code goes with the test's sandbox)
                # Spares the other processes of this run leave count for their own tests, not ours.
                waiting = spares(self._state, key, made_before=self._began)
                for _ in range(min(taken, MAX_SPARES) - len(waiting)):
                    start_spare(self.settings, self._state, key, self._spare_starter(pinned))
            except TestinfraError as exc:  # the next run starts its own: nothing is lost
                print(f"testinfra: no spares of {spec.name!r} left for the next run: {exc}", file=sys.stderr)

    def _lease_key(self, spec: ServiceSpec) -> tuple[Backend, str]:
        """The backend `spec` runs on and its lease key (see _lease), asked once per spec."""
        with self._lock:
            if spec.fingerprint not in self._lease_keys:
                order = start_order(spec)
                backend = self._backend_for(order)
                self._lease_keys[spec.fingerprint] = (backend, lease_key(order, backend))
            return self._lease_keys[spec.fingerprint]

    def _spare_starter(self, spec: ServiceSpec) -> Callable[[Slot, SlotRecord], None]:
        def start(slot: Slot, extra: SlotRecord) -> None:
            # In the keeper: a manager of its own, whose graph outlives it.
            keeper = Manager(
                self.settings, run_id=extra["run"], image_roots=self._image_roots, join_run=False
            )
            placement = Placement(extra["run"], Owner.me(), detached=True)
            keeper._start_slot_graph(spec, slot, placement, extra)

        return start

    @staticmethod
    def _pinned(spec: ServiceSpec, backend: Backend) -> ServiceSpec | None:
        """`spec` and its dependencies pinned (see Backend.pinned); None if one cannot be."""
        pinned = backend.pinned(spec)
        if pinned is None:
            return None
        deps = [Manager._pinned(dep, backend) for dep in spec.depends_on]
        if None in deps:
            return None
        return replace(pinned, depends_on=tuple(dep for dep in deps if dep is not None))

    def expect(self, spec: ServiceSpec, uses: int) -> None:
        """This session will `take(spec)` `uses` times: start the first instances now."""
        if uses > 0:
            self._pool(spec).expect(uses)

    def start_shared(self, spec: ServiceSpec) -> Service:
        """The run's one instance of `spec`, started by whichever process asks first."""
        slot = Slot(self._state.sub("runs", self.run_id, "shared", spec.fingerprint))
        with slot.locked():
            slot.users.add(Owner.me())
            record = slot.read()
            if record is not None and "failed" in record:
                raise ServiceStartError(
                    f"another process of this run could not start it: {record['failed']}", service=spec.name
                )
            attached = self._attach_graph(spec, record) if record and record.get("complete") else None
            service = attached.service if attached else None
            if service is None:
                if record is not None:
                    self._remove_recorded(spec, record)  # dead, or its starter died half-way
                    slot.clear()
                placement = Placement(self.run_id, self.run_owner, detached=True)
                try:
                    service = self._start_slot_graph(spec, slot, placement, {})
                except TestinfraError as exc:
                    slot.write({"failed": str(exc)})
                    raise
        with self._lock:
            self._shared.append((service, slot))
        return service

    def start_lease(self, spec: ServiceSpec) -> Service:
        """The machine's one instance of `spec` for every test process that agrees on what it runs
        (see _lease): started by whichever asks first, removed by its keeper once unused."""
        backend, key = self._lease_key(spec)
        slot = Slot(self._state.sub("leases", key))
        with self._lock:
            held = any(mine.directory == slot.directory for _, mine in self._shared)
        with slot.locked():
            idle = not slot.users.prune()
            slot.users.add(Owner.me())
            try:
                service = self._lease_graph(spec, key, slot, idle)
            except BaseException:
                if not held:  # (another fixture of this process still uses it)
                    slot.users.discard(Owner.me())
                raise
        with self._lock:
            self._shared.append((service, slot))
        return service

    def _lease_graph(self, spec: ServiceSpec, key: str, slot: Slot, idle: bool) -> Service:
        """Attach to the lease in `slot` (call with it locked), or start it anew."""
        record = slot.read()
        alive = record is not None and record.get("complete") and keeper_alive(record.get("keeper"))
        attached = self._attach_graph(spec, record) if alive and record else None
        service = attached.service if attached else None
        if service is not None and idle and not self._reset_graph(service):
            service = None  # it could not forget the last holder's state: start a new one
        if service is not None:
            return service
        if record is not None:
            remove_lease(self.settings, self._state, slot)  # its keeper or an instance died
        keeper = start_keeper(self.settings, self._state, key)
        extra: SlotRecord = {"keeper": str(keeper), "run": lease_run(key)}
        placement = Placement(lease_run(key), keeper, detached=True)
        try:
            return self._start_slot_graph(spec, slot, placement, extra)
        except BaseException:
            slot.clear()  # nothing to keep: with no record and no user, the keeper leaves at once
            raise

    @staticmethod
    def _reset_graph(service: Service) -> bool:
        """Run the reset of each service of an idle lease that declares one (the last holder, maybe
        the last run, left its state there), dependencies first; False if one fails."""
        graph = [service]
        for node in graph:
            graph.extend(dep for dep in node.dependencies.values() if dep not in graph)
        try:
            for node in reversed(graph):
                if node.spec.reset is not None:
                    node.reset()
        except Exception as exc:
            print(f"testinfra: a warm lease of {service.name!r} is replaced: {exc}", file=sys.stderr)
            return False
        return True

    def _start_slot_graph(
        self, spec: ServiceSpec, slot: Slot, placement: Placement, extra: SlotRecord
    ) -> Service:
        """Start a graph several processes will use, recording it in `slot` as it starts."""
        names = [node.name for node in start_order(spec)]

        def record(graph: _Graph, *, complete: bool) -> SlotRecord:
            # (While it starts, fewer instances than names: the ones created so far.)
            instances = zip(names[: len(graph.instances)], graph.instances, strict=True)
            return {
                **extra,
                "backend": graph.backend.name,
                "network": graph.network,
                "instances": {name: instance.record() for name, instance in instances},
                "complete": complete,
            }

        graph = self._start_graph(
            spec, placement=placement, progress=lambda graph: slot.write(record(graph, complete=False))
        )
        slot.write(record(graph, complete=True))
        assert graph.service is not None
        return graph.service

    def _attach_graph(self, spec: ServiceSpec, record: SlotRecord, *, shared: bool = True) -> _Graph | None:
        """Handles on a graph another process started; None if any part of it is gone."""
        backend = self._recorded_backend(record)
        graph = _Graph(backend, network=record.get("network"))
        services: dict[str, Service] = {}
        try:
            for node in start_order(spec):
                deps = {dep.name: services[dep.name] for dep in node.depends_on}
                graph.instances.append(backend.attach(node, record["instances"][node.name]))
                if graph.instances[-1].exit_code() is not None:
                    return None
                services[node.name] = Service(node, graph.instances[-1], backend.name, deps, shared=shared)
        except TestinfraError:
            return None  # gone, or its engine went away: start a new one
        graph.service = services[spec.name]
        return graph

    def _recorded_graph(self, spec: ServiceSpec, record: SlotRecord) -> _Graph | None:
        """Handles on what a slot's record names (what is already gone left out)."""
        if "backend" not in record:
            return None
        backend = self._recorded_backend(record)
        graph = _Graph(backend, network=record.get("network"))
        for node in start_order(spec):
            if node.name in record.get("instances", {}):
                try:
                    graph.instances.append(backend.attach(node, record["instances"][node.name]))
                except TestinfraError:
                    continue  # already gone
        return graph

    def _remove_recorded(self, spec: ServiceSpec, record: SlotRecord) -> None:
        graph = self._recorded_graph(spec, record)
        if graph is not None:
            self._teardown(graph)

    # -- stopping ------------------------------------------------------------------------------

    def release(self, service: Service) -> None:
        """Tear down `service` and what was started with it (or keep it, see Service.keep)."""
        with self._lock:
            shared = [slot for held, slot in self._shared if held is service]
            self._shared = [(held, slot) for held, slot in self._shared if held is not service]
            # Two fixtures of one spec (say, in two test modules) hold one slot: this process
            # stays its user until the last of them lets go.
            still_held = any(slot.directory == mine.directory for _, slot in self._shared for mine in shared)
            graph, pooled = self._pop_graph(service)
        if shared:
            if not still_held:
                self._release_shared(service, shared[0])
        elif graph is None:
            return
        elif service.keep:
            for instance in graph.instances:
                instance.keep()
            if graph.slot is not None:
                with graph.slot.locked():  # its keeper must not remove it
                    graph.slot.clear()
                    graph.slot.users.discard(Owner.me())
            self.kept.append(service)
        elif pooled:
            # The next test need not wait for this one's teardown.
            with self._lock:
                self._removals.append(self._executor.submit(self._teardown, graph))
        else:
            self._teardown(graph)

    def _pop_graph(self, service: Service) -> tuple[_Graph | None, bool]:
        """The graph `service` heads, no longer tracked; and whether it came from a pool."""
        for pooled, graphs in ((False, self._live), (True, self._pooled)):
            for i, graph in enumerate(graphs):
                if graph.service is service:
                    del graphs[i]
                    return graph, pooled
        return None, False

    def _release_shared(self, service: Service, slot: Slot) -> None:
        with slot.locked():
            slot.users.discard(Owner.me())
            record = slot.read()
            if record is not None and service.keep:
                # A failed test asked to keep it (its database with it): no run or keeper removes
                # it now; the processes still using it keep their handles.
                graph = self._recorded_graph(service.spec, record)
                for instance in graph.instances if graph is not None else []:
                    instance.keep()
                slot.clear()
                self.kept.append(service)
                return
            if record is None or "keeper" in record or slot.users.prune():
                return  # others still use it, or a lease's keeper removes it after its grace
            self._remove_recorded(service.spec, record)
            slot.clear()

    @staticmethod
    def _teardown(graph: _Graph) -> None:
        """Remove a graph's instances (dependents first) and its network; all of them, even
        when one fails, then raise the first failure."""
        if graph.slot is not None:
            with graph.slot.locked():  # a spare: its keeper removes it at once
                graph.slot.users.discard(Owner.me())
            return
        errors: list[BaseException] = []
        for instance in reversed(graph.instances):
            try:
                instance.remove()
            except TestinfraError as exc:
                errors.append(exc)
        if graph.network is not None:
            try:
                graph.backend.remove_network(graph.network)
            except TestinfraError as exc:
                errors.append(exc)
        if errors:
            raise TestinfraError(f"teardown failed for {len(errors)} resource(s): {errors!r}") from errors[0]

    def close(self) -> None:
        """Release everything this process started, keep tearing down after a failure, and raise
        the first failure at the end. The run's owner also removes whatever the run left."""
        errors: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except TestinfraError as exc:
                errors.append(exc)

        for pool in list(self._pools.values()):
            attempt(pool.close)
        while self._shared or self._live or self._pooled:
            held = self._shared[-1][0] if self._shared else (self._live or self._pooled)[-1].service
            assert held is not None
            attempt(lambda: self.release(held))  # noqa: B023 (called at once)
        self._executor.shutdown(wait=True)
        for removal in self._removals:
            attempt(removal.result)
        self._removals.clear()
        if self._registration is not None:
            attempt(self._registration.result)
        for kind, network in self._private_networks.items():
            attempt(lambda: self._backends[kind].remove_network(network))  # noqa: B023 (called at once)
        self._private_networks.clear()
        attempt(self._leave_spares)
        attempt(self._finish_run)
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if errors:
            raise errors[0]

    def _finish_run(self) -> None:
        me = Owner.me()
        run_dir = self.settings.state_dir / "runs" / self.run_id
        if self.run_owner == me and (run_dir / _OTHERS).exists():
            # The run is over (xdist workers are done by now): only kept services may outlive it.
            reap_run(self.settings, self._state, self.run_id, list(self._backends.values()))
        if self._registration is not None or (self.run_owner == me and run_dir.is_dir()):
            # Nothing of ours is left: the watchdog may exit once the other owners are done.
            self._run_owners().discard(me)
            self._registration = None
