"""Per-test isolated state on a shared server, as one-line fixtures.

    postgres = service_fixture(POSTGRES, scope="shared")
    db = database_fixture("postgres", migrations="path/to/migrations")
    cache = redis_fixture("redis")
    web = paired_service_fixture(WEB, db, env={"APP_DATABASE_URL": "{url}"})
    fresh_web = reset_fixture("session_web")

Each fixture names the fixture of its server, which it requests like any other (so the server is
set up first, torn down last, and its logs are attached to a failing test's report). What each
process holds per server (a clone pool, a Redis allocator, a pool of paired services) lives on a
`_Registry` in the session's stash and is closed by a session finalizer registered right after
the server was set up, so it closes before a session-wide server (session, shared, lease scope)
goes away; give these fixtures such a server, not one per module or test.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from testinfra._errors import ServiceGoneError
from testinfra._errors import SharedServiceError
from testinfra._errors import SpecError
from testinfra._errors import StateError
from testinfra._errors import TestinfraError
from testinfra._manager import Manager
from testinfra._owner import Owner
from testinfra._pool import Pool
from testinfra._postgres import ClonePool
from testinfra._postgres import Database
from testinfra._postgres import Migrations
from testinfra._postgres import PostgresCheck
from testinfra._postgres import Server
from testinfra._postgres import Strategy
from testinfra._postgres import ensure_template
from testinfra._postgres import sweep
from testinfra._readiness import LOG_TAIL_LINES
from testinfra._redis import ISOLATIONS
from testinfra._redis import Isolation
from testinfra._redis import RedisAllocator
from testinfra._redis import RedisDatabase
from testinfra._redis import RedisServer
from testinfra._service import Service
from testinfra._spec import ServiceSpec
from testinfra._spec import placeholders
from testinfra._spec import render

# The attribute of a state fixture's function that holds its configuration.
STATE_CONFIG = "_testinfra_state"
_REGISTRY = pytest.StashKey["_Registry"]()
_FAILED = pytest.StashKey[bool]()
_PAIRED = pytest.StashKey[dict[int, Any]]()
# What a paired service's env may name, for each kind of state.
DATABASE_FIELDS = {
    "url": "the database's URL as other services reach it",
    "name": "the database's name",
    "host": "the server's host as other services reach it",
    "port": "the server's port as other services reach it",
}
REDIS_FIELDS = {
    "url": "redis://host:port/index as other services reach it",
    "prefix": "the test's key prefix ('' with index isolation)",
    "db": "the database index",
    "host": "the server's host as other services reach it",
    "port": "the server's port as other services reach it",
}


# Arguments the state fixtures take themselves: a server fixture cannot have these names.
_OWN_ARGUMENTS = ("request", "testinfra_manager")


def _check_fixture_name(name: object, example: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name in _OWN_ARGUMENTS:
        raise SpecError(f"server {name!r} must be the name of the server's fixture, e.g. {example!r}")


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """What database_fixture was given: validated once, when the fixture is made."""

    server: str
    migrations: Migrations
    ahead: int = 2
    limit: int = 8
    timeout: float = 60.0
    strategy: Strategy = "FILE_COPY"

    def __post_init__(self) -> None:
        _check_fixture_name(self.server, "postgres")
        if type(self.ahead) is not int or type(self.limit) is not int or not 0 <= self.ahead <= self.limit:
            raise SpecError(
                f"need whole numbers 0 <= ahead <= limit (ahead={self.ahead!r}, limit={self.limit!r})"
            )
        if self.limit < 1:
            raise SpecError(f"limit={self.limit!r}: a test needs at least one database")
        if not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise SpecError(f"timeout={self.timeout!r} must be a positive number of seconds")
        if self.strategy not in ("FILE_COPY", "WAL_LOG"):
            raise SpecError(f"strategy={self.strategy!r} is not FILE_COPY or WAL_LOG")


@dataclass(frozen=True, kw_only=True)
class RedisConfig:
    server: str
    isolation: Isolation = "index"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_fixture_name(self.server, "redis")
        if self.isolation not in ISOLATIONS:
            raise SpecError(f"isolation={self.isolation!r} is not one of {', '.join(ISOLATIONS)}")
        if not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise SpecError(f"timeout={self.timeout!r} must be a positive number of seconds")


def _direct(service: Service) -> tuple[str, int]:
    # Where other services reach a server started on its own: its container's address on Docker's
    # default network (`peer`, the container's name, resolves only on a graph's own network; the
    # host's network reaches it too), or 127.0.0.1 for a local process or a container on the host's
    # network. (The instance is testinfra's own, so this stays in the package.)
    return service._instance.direct_address()


def postgres_server(service: Service) -> Server:
    check = service.spec.ready
    if not isinstance(check, PostgresCheck):
        raise pytest.UsageError(
            f"service {service.name!r} is not a PostgreSQL server testinfra can log in to: give its spec "
            "ready=PostgresCheck(user=..., password=..., dbname=...) (the database fixtures use those credentials)"
        )
    peer_host, peer_port = _direct(service)
    return Server(
        name=service.name,
        host=service.host,
        port=service.port,
        peer_host=peer_host,
        peer_port=peer_port,
        user=check.user,
        password=check.password,
        admin_db=check.dbname,
    )


def redis_server(service: Service) -> RedisServer:
    peer_host, peer_port = _direct(service)
    return RedisServer(
        name=service.name, host=service.host, port=service.port, peer_host=peer_host, peer_port=peer_port
    )


def _gone(service: Service) -> bool:
    try:
        return service.exit_code() is not None
    except TestinfraError:
        return True


def check_alive(service: Service) -> None:
    """ServiceGoneError, with the server's last log lines, when it has exited."""
    try:
        code = service.exit_code()
    except TestinfraError as exc:
        raise ServiceGoneError(
            f"it is gone ({exc}); a test needs it for its state", service=service.name
        ) from exc
    if code is not None:
        raise ServiceGoneError(
            "it exited: no test can get its state from it any more (the run's other tests that need it fail "
            "with this error too)",
            service=service.name,
            exit_code=code,
            logs_tail=service.logs(tail=LOG_TAIL_LINES),
        )


class _Outcomes:
    """Notes which tests failed (for keep-on-failure), and says where their state is."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed:
            item.stash[_FAILED] = True
            funcargs = getattr(item, "funcargs", {})
            manager = funcargs.get("testinfra_manager")  # (every database fixture asks for it)
            kept = isinstance(manager, Manager) and manager.settings.keep_on_failure
            for value in funcargs.values():
                if isinstance(value, Database):
                    note = "kept" if kept else "dropped after the test; --testinfra-keep-on-failure keeps it"
                    report.sections.append(
                        (f"testinfra: database {value.name}", f"psql '{value.dsn}'  ({note})")
                    )
                elif isinstance(value, RedisDatabase):
                    report.sections.append(("testinfra: redis", f"{value!r} at {value.url}"))
        return report


def _failed(item: pytest.Item) -> bool:
    return item.stash.get(_FAILED, False)


@dataclass
class _Entry:
    """What this process holds for one server (kept with the service, so its id stays unique)."""

    service: Service
    value: Any


class _Registry:
    """This session's clone pools, Redis allocators and pools of paired services."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.owner = Owner.me()
        self._lock = threading.RLock()
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._failures: dict[tuple[Any, ...], StateError] = {}
        self._outcomes = _Outcomes()
        config.pluginmanager.register(self._outcomes, "testinfra-state-outcomes")

    def _get(
        self,
        key: tuple[Any, ...],
        service: Service,
        session: pytest.Session,
        make: Callable[[], Any],
        close: Callable[[Any], None],
    ) -> Any:
        with self._lock:
            if key in self._failures:
                # A new error each time: re-raising one object would grow its traceback test by test.
                raise StateError(str(self._failures[key])) from self._failures[key]
            if key not in self._entries:
                try:
                    value = make()
                except StateError as exc:
                    self._failures[key] = exc  # the next tests fail at once, with the same message
                    raise
                self._entries[key] = _Entry(service, value)

                def finish() -> None:
                    with self._lock:
                        entry = self._entries.pop(key, None)
                    if entry is not None:
                        close(entry.value)

                # After the server's own finalizer: this one runs first.
                session.addfinalizer(finish)
            return self._entries[key].value

    def clone_pool(self, service: Service, config: DatabaseConfig, session: pytest.Session) -> ClonePool:
        def make() -> ClonePool:
            server = postgres_server(service)
            sweep(server, self.owner)  # what dead processes left, before we add ours
            template = ensure_template(server, config.migrations, self.owner, config.timeout)
            return ClonePool(
                server,
                template.name,
                ahead=config.ahead,
                limit=config.limit,
                strategy=config.strategy,
                owner=self.owner,
            )

        def close(pool: ClonePool) -> None:
            try:
                pool.close()
                sweep(pool.server, self.owner)
            except Exception:
                if not _gone(service):  # a server that is gone took its databases with it
                    raise

        return self._get(("postgres", id(service), config), service, session, make, close)  # type: ignore[no-any-return]

    def allocator(self, service: Service, session: pytest.Session) -> RedisAllocator:
        def make() -> RedisAllocator:
            allocator = RedisAllocator(redis_server(service), self.owner)
            allocator.sweep()
            return allocator

        def close(allocator: RedisAllocator) -> None:
            try:
                allocator.sweep()
            except Exception:
                if not _gone(service):
                    raise
            finally:
                allocator.close()

        return self._get(("redis", id(service)), service, session, make, close)  # type: ignore[no-any-return]

    def pairs(
        self, key: tuple[Any, ...], service: Service, session: pytest.Session, make: Callable[[], Any]
    ) -> Any:
        return self._get(("pairs", *key), service, session, make, lambda pairs: pairs.close())

    def close(self) -> None:
        self.config.pluginmanager.unregister(self._outcomes)


def registry(request: pytest.FixtureRequest) -> _Registry:
    config = request.config
    if _REGISTRY not in config.stash:
        config.stash[_REGISTRY] = _Registry(config)
        config.add_cleanup(config.stash[_REGISTRY].close)
    return config.stash[_REGISTRY]


def _with_arguments(fixture: Callable[..., Any], names: list[str]) -> None:
    """Make pytest see `names` as the fixture's arguments (it reads the signature), so the fixtures
    it needs by name are set up first and appear in the test's funcargs."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    fixture.__signature__ = inspect.Signature([inspect.Parameter(name, kind) for name in dict.fromkeys(names)])  # type: ignore[attr-defined]


def _as_migrations(migrations: Migrations | str | Path | None) -> Migrations:
    if migrations is None:
        return Migrations(apply=lambda conn: None, key="no migrations")
    if isinstance(migrations, Migrations):
        return migrations
    if isinstance(migrations, str | Path):
        return Migrations(directory=Path(migrations))
    raise SpecError(
        f"migrations={migrations!r}: give a directory of .sql files, or Migrations(apply=..., key=...)"
    )


def _keep(request: pytest.FixtureRequest, manager: Manager) -> bool:
    return manager.settings.keep_on_failure and _failed(request.node)


def take_database(
    request: pytest.FixtureRequest, config: DatabaseConfig, service: Service
) -> tuple[ClonePool, Database]:
    check_alive(service)
    pool = registry(request).clone_pool(service, config, request.session)
    try:
        name = pool.take(config.timeout)
    except StateError:
        check_alive(service)  # a server that died says so, with its logs
        raise
    return pool, Database(name, pool.server)


def database_fixture(
    server: str,
    *,
    migrations: Migrations | str | Path | None = None,
    ahead: int = 2,
    limit: int = 8,
    timeout: float = 60.0,
    strategy: Strategy = "FILE_COPY",
    name: str | None = None,
) -> Any:
    """A fixture that gives each test a database of its own on the PostgreSQL of fixture `server`.

    The database is a clone of a template migrated once per server and per migration set (see
    Migrations; a directory of .sql files may be given as a path). Each process keeps `ahead`
    clones ready, and holds at most `limit` at once; a test waits at most `timeout` seconds for
    one. It is dropped after the test, or kept with --testinfra-keep-on-failure when the test
    failed. The server's spec must have ready=PostgresCheck(...): its credentials are used.
    """
    config = DatabaseConfig(
        server=server,
        migrations=_as_migrations(migrations),
        ahead=ahead,
        limit=limit,
        timeout=timeout,
        strategy=strategy,
    )

    def fixture(
        request: pytest.FixtureRequest, testinfra_manager: Manager, **servers: Service
    ) -> Iterator[Database]:
        paired = request.node.stash.get(_PAIRED, {}).get(id(config))
        if paired is not None:
            yield paired  # the database of a paired service this test already has
            return
        service = servers[server]
        pool, database = take_database(request, config, service)
        request.node.stash.setdefault(_PAIRED, {})[id(config)] = database
        try:
            yield database
        finally:
            database.close_connections()
            pool.give_back(database.name, keep=_keep(request, testinfra_manager))

    _with_arguments(fixture, ["request", "testinfra_manager", server])
    fixture.__doc__ = f"A database of its own for each test, on the PostgreSQL of fixture {server!r}."
    setattr(fixture, STATE_CONFIG, config)
    return pytest.fixture(name=name)(fixture)


def redis_fixture(
    server: str, *, isolation: Isolation = "index", timeout: float = 60.0, name: str | None = None
) -> Any:
    """A fixture that gives each test a Redis database index of its own (or, with
    isolation="prefix", a key prefix of its own) on the Redis of fixture `server`, emptied after
    the test. With index isolation, the server needs more databases than tests run at once
    (`--databases`, 16 by default); a test waits at most `timeout` seconds for one."""
    config = RedisConfig(server=server, isolation=isolation, timeout=timeout)

    def fixture(request: pytest.FixtureRequest, **servers: Service) -> Iterator[RedisDatabase]:
        paired = request.node.stash.get(_PAIRED, {}).get(id(config))
        if paired is not None:
            yield paired
            return
        service = servers[server]
        check_alive(service)
        allocator = registry(request).allocator(service, request.session)
        database = allocator.acquire(config.isolation, config.timeout)
        request.node.stash.setdefault(_PAIRED, {})[id(config)] = database
        try:
            yield database
        finally:
            allocator.release(database)

    _with_arguments(fixture, ["request", server])
    fixture.__doc__ = (
        f"A Redis database of its own ({isolation}) for each test, on the Redis of fixture {server!r}."
    )
    setattr(fixture, STATE_CONFIG, config)
    return pytest.fixture(name=name)(fixture)


def reset_fixture(service: str, *, name: str | None = None) -> Any:
    """A fixture that gives each test the service of fixture `service` (a session, module or
    class scoped one), after running its spec's reset action (ServiceSpec.reset)."""
    if not isinstance(service, str) or not service.isidentifier():
        raise SpecError(f"reset_fixture needs the name of a service fixture, not {service!r}")

    def fixture(**services: Service) -> Service:
        target = services[service]
        if target.shared:
            raise SharedServiceError(
                f"cannot reset the shared service {target.name!r} before each test: the tests of other "
                "workers use it at the same time. Reset a service of one process (scope session, module or "
                "class), or give each test its own state (database_fixture, redis_fixture)"
            )
        target.reset()
        return target

    _with_arguments(fixture, [service])
    fixture.__doc__ = f"The service of fixture {service!r}, reset before each test."
    return pytest.fixture(name=name)(fixture)


class _Pairs:
    """Services bound to state of their own, started ahead: a warm pool of (state, service)."""

    def __init__(
        self, manager: Manager, start: Callable[[], tuple[Any, Service]], release: Callable[[Any], None]
    ) -> None:
        self._manager = manager
        self._release_state = release
        depth = manager.settings.pool_depth
        # Pairs start, and used ones go away, on these threads while the tests run.
        self._executor = ThreadPoolExecutor(depth + 2, thread_name_prefix="testinfra-pairs")
        self._removals: list[Future[None]] = []
        self.pool: Pool[tuple[Any, Service]] = Pool(start, self._discard, self._executor, depth)
        self._counted = False

    def take(self, request: pytest.FixtureRequest) -> tuple[Any, Service]:
        if not self._counted:
            self._counted = True
            if not hasattr(request.config, "workerinput"):  # (an xdist worker cannot know its share)
                # Pairs for the tests still to come that use this fixture, no more.
                items = request.session.items
                rest = items[items.index(request.node) :] if request.node in items else []
                self.pool.expect(
                    sum(1 for item in rest if request.fixturename in getattr(item, "fixturenames", ()))
                )
        return self.pool.take()

    def _discard(self, pair: tuple[Any, Service]) -> None:
        state, service = pair
        try:
            self._manager.release(service)  # first: the service lets go of its state
        finally:
            self._release_state(state)

    def discard_later(self, pair: tuple[Any, Service]) -> None:
        """Remove a used pair in the background: the next test need not wait for it."""
        self._removals.append(self._executor.submit(self._discard, pair))

    def close(self) -> None:
        errors: list[BaseException] = []
        try:
            self.pool.close()
        except TestinfraError as exc:
            errors.append(exc)
        for removal in self._removals:
            try:
                removal.result()
            except TestinfraError as exc:
                errors.append(exc)
        self._executor.shutdown(wait=True)
        if errors:
            raise errors[0]


def paired_service_fixture(
    spec: ServiceSpec, state: Any, *, env: Mapping[str, str], name: str | None = None
) -> Any:
    """A fixture that gives each test a never-used instance of `spec` bound to the test's own state
    (a database_fixture or redis_fixture, given as the fixture itself): `env` entries name the
    state with placeholders, e.g. {"APP_DATABASE_URL": "{url}"}. Pairs of (state, service) start
    ahead, as function-scoped services do. The state fixture, requested in the same test after
    this one, gives the same state.

    The service reaches the state's server at its own address (see Database.peer_url), from a
    bridged container or from the host's network alike: start `spec` alone, not in a graph with a
    network of its own.
    """
    config = getattr(state, STATE_CONFIG, None)
    if not isinstance(config, DatabaseConfig | RedisConfig):
        raise SpecError(f"paired_service_fixture needs a database_fixture or redis_fixture, not {state!r}")
    if not isinstance(spec, ServiceSpec):
        raise SpecError(f"paired_service_fixture needs a ServiceSpec, not {spec!r}")
    fields = DATABASE_FIELDS if isinstance(config, DatabaseConfig) else REDIS_FIELDS
    for key, value in env.items():
        for peer, field in placeholders(value):
            if peer is not None or field not in fields:
                raise SpecError(
                    f"env {key}={value!r}: a paired service's env may name its state's "
                    + ", ".join(f"{{{known}}}" for known in fields)
                )
    server = config.server

    def bind(handle: Any) -> ServiceSpec:
        def value(peer: str | None, field: str) -> str:
            if field == "url":
                return str(handle.peer_url)
            if field in ("host", "port"):
                return str(getattr(handle.server, f"peer_{field}"))
            return str(getattr(handle, field))

        rendered = {key: render(template, value) for key, template in env.items()}
        return replace(spec, env={**spec.env, **rendered})

    def fixture(
        request: pytest.FixtureRequest, testinfra_manager: Manager, **servers: Service
    ) -> Iterator[Service]:
        target = servers[server]
        check_alive(target)
        if target.backend == "docker" and target.spec.host_network and spec.image and not spec.host_network:
            raise SpecError(
                f"{spec.name!r} would run in a container on a network of its own, from which server "
                f"{target.name!r}, on the host's network at 127.0.0.1, cannot be reached; give "
                f"{spec.name!r} host_network=True (with {{port}} in its args), or {target.name!r} none"
            )
        held = request.node.stash.setdefault(_PAIRED, {})
        if id(config) in held:  # the test took its state first: a service for it, started now
            service = testinfra_manager.start(bind(held[id(config)]))
            try:
                yield service
            finally:
                testinfra_manager.release(service)
            return
        pairs = registry(request).pairs(
            (id(target), id(config), spec.fingerprint),
            target,
            request.session,
            lambda: _make_pairs(request, testinfra_manager, config, target, bind),
        )
        pair = pairs.take(request)
        held[id(config)] = pair[0]
        try:
            yield pair[1]
        finally:
            if isinstance(pair[0], Database):
                pair[0].close_connections()
            if _keep(request, testinfra_manager):
                pair[1].keep = True  # set by the plugin too; the state stays with it
                testinfra_manager.release(pair[1])
                if isinstance(pair[0], Database):
                    registry(request).clone_pool(target, config, request.session).give_back(pair[0].name, keep=True)  # type: ignore[arg-type]
            else:
                pairs.discard_later(pair)

    _with_arguments(fixture, ["request", "testinfra_manager", server])
    fixture.__doc__ = f"A never-used {spec.name!r} bound to this test's own state on fixture {server!r}."
    return pytest.fixture(name=name)(fixture)


def _make_pairs(
    request: pytest.FixtureRequest,
    manager: Manager,
    config: DatabaseConfig | RedisConfig,
    target: Service,
    bind: Callable[[Any], ServiceSpec],
) -> _Pairs:
    session = request.session
    if isinstance(config, DatabaseConfig):
        clones = registry(request).clone_pool(target, config, session)

        def take_state() -> Any:
            return Database(clones.take(config.timeout), clones.server)

        def release_state(state: Any) -> None:
            clones.give_back(state.name)

    else:
        allocator = registry(request).allocator(target, session)

        def take_state() -> Any:
            return allocator.acquire(config.isolation, config.timeout)

        def release_state(state: Any) -> None:
            allocator.release(state)

    def start() -> tuple[Any, Service]:
        state = take_state()
        try:
            return state, manager.start(bind(state))
        except BaseException:
            release_state(state)
            raise

    return _Pairs(manager, start, release_state)
