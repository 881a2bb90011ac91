"""The pytest plugin: options, the session's plugin object, and the fixtures.

Registered as the `pytest11` entry point `labrador_testinfra`; in a repo that does not install
the distribution, `pytest_plugins = ["testinfra.plugin"]` in the top conftest.py does the same.
All state lives on a `TestinfraPlugin` registered in `pytest_configure` and undone in
`pytest_unconfigure`, so sessions run in-process (pytester) leave nothing behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from dataclasses import replace
from importlib import metadata
from types import FrameType
from typing import Any

import pytest

from testinfra._errors import BackendUnavailableError
from testinfra._errors import StateDirError
from testinfra._errors import TestinfraError
from testinfra._fixtures import POOLED_SPEC
from testinfra._manager import Manager
from testinfra._owner import Owner
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._service import Service
from testinfra._service import failure_report
from testinfra._settings import BACKENDS
from testinfra._settings import PARSERS
from testinfra._settings import Settings
from testinfra._settings import env_var
from testinfra._settings import resolve
from testinfra._spec import ServiceSpec
from testinfra._statedir import StateDir
from testinfra._statedir import private_dir

PLUGIN_NAME = "testinfra-session"
# How the run reaches xdist workers: the controller puts it in each worker's `workerinput`.
_WORKER_KEY = "testinfra_run"
# Settings given as command-line flags (the others are environment or ini only).
_FLAGS = {
    "keep_on_failure": "leave the services of failed tests running after the session, and print how to reach "
    "and remove them",
    "require_docker": "fail instead of falling back to local processes when no Docker engine answers (CI sets this)",
}
_INI_HELP = {
    "backend": "default for --testinfra-backend",
    "keep_on_failure": "default for --testinfra-keep-on-failure",
    "require_docker": "default for --testinfra-require-docker",
    "state_dir": "directory for lock and record files (default $TMPDIR/testinfra-$UID)",
    "port_range": "ports to reserve from, LOW-HIGH (default: below the kernel's ephemeral range)",
    "label": "prefix of the labels on testinfra's containers and networks",
    "pool_depth": "per-test instances started ahead of the tests that take them (0: none; default: cores, at most 4)",
    "reuse_ttl": "seconds leases, and spares of per-test services, stay warm for the next run (0, the default: off; not in CI)",
}


def _check_no_namesake() -> None:
    # pytest-testinfra installs an import package named `testinfra` too, with a `testinfra.plugin`
    # entry point: beside it, one overwrites the other's files, and pytest would load this module
    # twice. Checked at import, before pytest registers anything, so the error is this one.
    try:
        other = metadata.distribution("pytest-testinfra")
    except metadata.PackageNotFoundError:
        return
    raise pytest.UsageError(
        f"pytest-testinfra {other.version} is installed beside labrador-testinfra: both install an import "
        "package named `testinfra`, so one has overwritten the other's files. Uninstall one of them "
        "(pip uninstall pytest-testinfra), or use separate virtualenvs"
    )


_check_no_namesake()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testinfra", "services as fixtures (testinfra)")
    group.addoption(
        "--testinfra-backend",
        choices=BACKENDS,
        default=None,
        help="run services in containers (docker), as local processes (process), or docker when an engine "
        f"answers (auto). Env: {env_var('backend')}. Default: auto.",
    )
    for name, text in _FLAGS.items():
        group.addoption(
            f"--testinfra-{name.replace('_', '-')}",
            action="store_true",
            default=None,
            help=f"{text}. Env: {env_var(name)}=1.",
        )
    for name in PARSERS:
        parser.addini(f"testinfra_{name}", f"{_INI_HELP[name]}. Env: {env_var(name)}.", default="")


def _settings(config: pytest.Config) -> Settings:
    """Each setting from its option, else its TESTINFRA_* variable, else its ini value."""

    def lookup(name: str) -> str | bool | None:
        option = config.getoption(f"testinfra_{name}", None)
        if option is not None:
            return option  # type: ignore[no-any-return]
        if env_var(name) in os.environ:
            return os.environ[env_var(name)]
        value = config.getini(f"testinfra_{name}")
        return value if isinstance(value, str) else None

    try:
        return resolve(lookup)
    except TestinfraError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "testinfra_docker: the test needs a Docker engine; skipped where none exists, failed when Docker is "
        "required (TESTINFRA_REQUIRE_DOCKER=1)",
    )
    settings = _settings(config)
    try:
        private_dir(settings.state_dir)
    except StateDirError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.pluginmanager.register(TestinfraPlugin(config, settings), PLUGIN_NAME)


def _pooled_specs(item: pytest.Item | None) -> list[ServiceSpec]:
    """The specs of the function-scoped (pooled) services `item` takes."""
    info = getattr(item, "_fixtureinfo", None)
    specs = []
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        spec = getattr(definitions[-1].func, POOLED_SPEC, None)
        if isinstance(spec, ServiceSpec):
            specs.append(spec)
    return specs


class TestinfraPlugin:
    """This session's testinfra: its Manager, and the hooks that act on it."""

    __test__ = False

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        worker_input = getattr(config, "workerinput", {})
        if _WORKER_KEY in worker_input:  # an xdist worker: the controller's run
            run_id, owner_text = worker_input[_WORKER_KEY]
            run_owner = Owner.parse(owner_text)
            # The workers share the machine's cores: each starts its share of instances ahead.
            workers = int(worker_input.get("workercount", 1))
            settings = replace(
                settings, pool_depth=min(settings.pool_depth, max(1, settings.pool_depth // workers))
            )
            self.settings = settings
        else:  # any other session begins a run, even one started from inside another's test
            run_id, run_owner = None, Owner.me()
        self.manager = Manager(
            settings,
            run_id=run_id,
            run_owner=run_owner,
            image_roots=[config.rootpath, config.invocation_params.dir],
        )
        self._docker_problem: list[str | None] = []
        # Warm pools: tests that take each spec, where each test stands, specs not yet warming.
        self._uses: Counter[ServiceSpec] = Counter()
        self._positions: dict[str, int] = {}
        self._warm_ups: list[tuple[ServiceSpec, int]] = []
        self._previous_sigterm: Any = None
        # Teardowns that could not finish because the engine was gone (see pytest_runtest_teardown).
        self._engine_lost: list[BackendUnavailableError] = []
        self._interrupt_on_sigterm()
        # Where this process writes the JUnit XML (never in an xdist worker), hand it the services' logs.
        if config.option.xmlpath and not hasattr(config, "workerinput"):
            config.pluginmanager.register(JUnitServiceLogs(), "testinfra-junit")

    def _interrupt_on_sigterm(self) -> None:
        """Turn SIGTERM (how Pants and CI stop a test process) into a Ctrl-C: pytest then tears down."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else handles it; don't take it over

        def handler(signum: int, frame: FrameType | None) -> None:
            # A second SIGTERM must not interrupt the teardown the first one started.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received: tearing down services")

        self._previous_sigterm = signal.signal(signal.SIGTERM, handler)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Note how many tests will take an instance of each spec, and where the first one is:
        its warm pool starts filling a few tests before that (and never for nobody)."""
        if session.config.option.collectonly or hasattr(self.config, "workerinput"):
            return  # (an xdist worker runs a share of the tests it cannot know in advance)
        first: dict[ServiceSpec, int] = {}
        for index, item in enumerate(session.items):
            self._positions[item.nodeid] = index
            for spec in _pooled_specs(item):
                self._uses[spec] += 1
                first.setdefault(spec, index)
        self._warm_ups = sorted(first.items(), key=lambda pair: pair[1])
        self._warm_up(0)

    def _warm_up(self, position: int) -> None:
        """Start the pools of specs first needed within the next few tests."""
        horizon = position + max(1, self.settings.pool_depth)
        while self._warm_ups and self._warm_ups[0][1] <= horizon:
            spec, _ = self._warm_ups.pop(0)
            self.manager.expect(spec, self._uses[spec])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """(xdist worker) Of its share, a worker knows the test it runs and the next one: start
        instances for those, never for tests another worker may get."""
        if not hasattr(self.config, "workerinput"):
            return
        coming = Counter([*_pooled_specs(item), *_pooled_specs(nextitem)])
        for spec, uses in coming.items():
            self.manager.expect(spec, uses)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """(xdist controller) Hand the run to each worker."""
        node.workerinput[_WORKER_KEY] = [self.manager.run_id, str(self.manager.run_owner)]

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        problem: BaseException | None = self._engine_lost[0] if self._engine_lost else None
        try:
            # Safety net: fixtures release their services, but an interrupted session may not get there.
            self.manager.close()
        except TestinfraError as exc:
            problem = problem or _engine_loss(exc) or exc
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
        if problem is not None:
            # After the summary, a traceback would bury the point: one line, and the watchdog goes on.
            first = str(problem).splitlines()[0]
            sys.stdout.flush()  # (after the summary also where stdout is a buffered file, as in CI logs)
            print(
                f"testinfra: teardown incomplete ({first}); the run's watchdog keeps trying", file=sys.stderr
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self) -> Generator[None, None, None]:
        """A fixture that could not remove its service because the engine is gone is not a test
        error: the run's watchdog removes it once the engine answers. One line at the end says so
        (pytest_unconfigure), instead of a traceback through the HTTP layer for each fixture."""
        try:
            return (yield)
        except Exception as exc:
            # (pytest raises a group when several finalizers failed.)
            errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
            lost = [cause for cause in map(_engine_loss, errors) if cause is not None]
            if len(lost) < len(errors):
                raise  # something else went wrong too: all of it is reported
            self._engine_lost += lost
            return None

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.settings.keep_on_failure or hasattr(self.config, "workerinput"):
            return
        from testinfra._backends import open_all
        from testinfra._reaper import list_resources

        backends, _ = open_all(self.settings, StateDir(self.settings.state_dir))
        try:
            kept = [r for r in list_resources(backends, self.manager.run_id) if r.kept]
        finally:
            for backend in backends:
                backend.close()
        if not kept:
            return
        # Kept by this process (with addresses) or by xdist workers (found by their marks).
        local = {service.resource_id: service for service in self.manager.kept}
        terminalreporter.section("testinfra: services kept after failed tests")
        for resource in kept:
            service = local.get(resource.id)
            where = f" at {service.url}" if service else ""
            how = f"docker logs {resource.id}" if resource.kind == "container" else f"pid {resource.id}"
            terminalreporter.write_line(f"{resource.name}{where} ({resource.kind}: {how})")
        terminalreporter.write_line(
            f"remove them with: python -m testinfra reap --kept --run {self.manager.run_id}"
        )

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.nodeid in self._positions:
            self._warm_up(self._positions[item.nodeid])
        if item.get_closest_marker("testinfra_docker") is None:
            return
        problem = self.docker_problem()
        if problem is None:
            return
        if self.settings.require_docker:
            pytest.fail(f"this test needs a Docker engine, and Docker is required here: {problem}")
        pytest.skip(f"no Docker engine on this machine: {problem}")

    def docker_problem(self) -> str | None:
        """Why no Docker engine can be used, or None; asked once per session, not once per test."""
        if not self._docker_problem:
            from testinfra._backends.docker import engine_problem

            self._docker_problem.append(engine_problem())
        return self._docker_problem[0]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed:
            funcargs = getattr(item, "funcargs", {})
            services = [value for value in funcargs.values() if isinstance(value, Service)]
            for title, body in failure_report(services):
                report.sections.append((title, body))
            if self.settings.keep_on_failure:
                for service in services:
                    service.keep = True
        return report


class JUnitServiceLogs:
    """Puts a failed test's service sections into its JUnit XML, as captured stderr.

    --junitxml writes (with `junit_logging`) only the sections titled "Captured ..." of a test's
    teardown report; ours are titled "testinfra: ..." and sit on the report of the failed phase.
    The copies exist only while the teardown report is logged, so the terminal summary still
    shows each section once.
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[str, str]]] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        # JUnit gets the bodies only: each copy starts with its title (service, state, address).
        copies = [
            (f"Captured stderr {title}", f"{title}\n{body}")
            for title, body in report.sections
            if title.startswith("testinfra: ")
        ]
        self._pending.setdefault(report.nodeid, []).extend(copies)
        if report.when != "teardown":
            return (yield)
        copies = self._pending.pop(report.nodeid)
        report.sections.extend(copies)
        try:
            return (yield)
        finally:
            del report.sections[len(report.sections) - len(copies) :]


def _engine_loss(exc: BaseException) -> BackendUnavailableError | None:
    """The lost engine behind `exc` (a teardown error wraps the first failure as its cause)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BackendUnavailableError):
            return cause
        cause = cause.__cause__
    return None


def _plugin(config: pytest.Config) -> TestinfraPlugin:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(plugin, TestinfraPlugin)
    return plugin


@pytest.fixture(scope="session")
def testinfra_manager(pytestconfig: pytest.Config) -> Manager:
    """The manager of this test process: `start(spec)` / `release(service)` for ad-hoc services."""
    return _plugin(pytestconfig).manager


@pytest.fixture
def tcp_port(pytestconfig: pytest.Config) -> Iterator[int]:
    """A TCP port on 127.0.0.1 that no other testinfra user on this machine gets while the test runs."""
    settings = _plugin(pytestconfig).settings
    with reserve_port(StateDir(settings.state_dir), settings.port_range) as reservation:
        yield reservation.port


@pytest.fixture
def tcp_port_factory(pytestconfig: pytest.Config) -> Iterator[Callable[[], int]]:
    """Call it for as many distinct reserved ports as the test needs."""
    settings = _plugin(pytestconfig).settings
    state = StateDir(settings.state_dir)
    reservations: list[PortReservation] = []

    def factory() -> int:
        reservations.append(reserve_port(state, settings.port_range))
        return reservations[-1].port

    yield factory
    for reservation in reservations:
        reservation.release()
