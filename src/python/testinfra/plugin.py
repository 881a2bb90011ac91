"""The pytest plugin: options, fixtures, failure reports and signal handling.

Registered as the `pytest11` entry point `testinfra`; in a repo that does not install it,
`pytest_plugins = ["testinfra.plugin"]` in the top conftest.py does the same.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from types import FrameType

import pytest

from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._service import BACKENDS
from testinfra._service import Manager
from testinfra._service import Service
from testinfra._service import failure_report
from testinfra._state import RUN_ID_ENV
from testinfra._state import RUN_OWNER_ENV
from testinfra._state import Owner
from testinfra._state import new_run_id
from testinfra._watchdog import run_dir

manager_key = pytest.StashKey[Manager]()
docker_problem_key = pytest.StashKey["str | None"]()
_TRUE = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testinfra", "services as fixtures (testinfra)")
    group.addoption(
        "--testinfra-backend",
        choices=BACKENDS,
        default=None,
        help="run services in containers (docker), as local processes (process), or docker when an "
        "engine answers (auto). Env: TESTINFRA_BACKEND. Default: auto.",
    )
    parser.addini("testinfra_backend", "default for --testinfra-backend", default="auto")
    flags = {
        "keep-on-failure": "leave the services of failed tests running after the session, and print how "
        "to reach and remove them",
        "require-docker": "fail instead of falling back to local processes when no Docker engine answers "
        "(CI sets this)",
    }
    for name, text in flags.items():
        env = "TESTINFRA_" + name.replace("-", "_").upper()
        group.addoption(
            f"--testinfra-{name}", action="store_true", default=None, help=f"{text}. Env: {env}=1."
        )
        parser.addini(
            f"testinfra_{name.replace('-', '_')}",
            f"default for --testinfra-{name}",
            type="bool",
            default=False,
        )


def _setting(config: pytest.Config, name: str) -> str | bool:
    """The option --testinfra-<name>, else env TESTINFRA_<NAME>, else ini testinfra_<name>."""
    key = name.replace("-", "_")
    value = config.getoption(f"testinfra_{key}")
    if value is not None:
        return value  # type: ignore[no-any-return]
    env = f"TESTINFRA_{key.upper()}"
    if env in os.environ:
        return os.environ[env]
    return config.getini(f"testinfra_{key}")  # type: ignore[no-any-return]


def _flag(config: pytest.Config, name: str) -> bool:
    value = _setting(config, name)
    return value if isinstance(value, bool) else value.lower() in _TRUE


def _run(config: pytest.Config) -> tuple[str, Owner]:
    """This run's id and owner (the process that began it)."""
    # xdist workers inherit the controller's environment: one run for all workers of a run.
    # Any other pytest starts a new run, even when started from inside another one's test.
    if hasattr(config, "workerinput") and os.environ.get(RUN_ID_ENV) and os.environ.get(RUN_OWNER_ENV):
        return os.environ[RUN_ID_ENV], Owner.parse(os.environ[RUN_OWNER_ENV])
    run_id, owner = new_run_id(), Owner.me()
    os.environ[RUN_ID_ENV] = run_id
    os.environ[RUN_OWNER_ENV] = str(owner)
    return run_id, owner


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM (how Pants and CI stop a test process) into a Ctrl-C: pytest then tears down."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles it; don't take it over

    def handler(signum: int, frame: FrameType | None) -> None:
        # A second SIGTERM must not interrupt the teardown the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received: tearing down services")

    signal.signal(signal.SIGTERM, handler)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "testinfra_docker: the test needs a Docker engine; skipped where none exists, "
        "failed when Docker is required (TESTINFRA_REQUIRE_DOCKER=1)",
    )
    backend = str(_setting(config, "backend"))
    if backend not in BACKENDS:
        raise pytest.UsageError(f"TESTINFRA_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
    require_docker = _flag(config, "require-docker")
    if require_docker and backend == "process":
        raise pytest.UsageError(
            "Docker is required but --testinfra-backend=process was chosen; drop one of them"
        )
    run_id, run_owner = _run(config)
    config.stash[manager_key] = Manager(
        run_id, backend, require_docker, keep_on_failure=_flag(config, "keep-on-failure"), run_owner=run_owner
    )
    _interrupt_on_sigterm()
    # Where this process writes the JUnit XML (never in an xdist worker), hand it the services' logs.
    if config.option.xmlpath and not hasattr(config, "workerinput"):
        config.pluginmanager.register(JUnitServiceLogs(), "testinfra-junit")


def pytest_unconfigure(config: pytest.Config) -> None:
    manager = config.stash.get(manager_key, None)
    if manager is None:
        return
    # Safety net: fixtures release their services, but an interrupted session may not get there.
    manager.close()
    # (No run directory: no process of this run ever started a service, nothing to look for.)
    if manager.run_owner == Owner.me() and run_dir(manager.run_id).exists():
        # The run is over (xdist workers are done by now): nothing of it may outlive it but kept services.
        from testinfra._reaper import list_resources
        from testinfra._reaper import reap

        reap([r for r in list_resources(run=manager.run_id) if not r.kept])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    manager = config.stash.get(manager_key, None)
    if manager is None or not manager.keep_on_failure or hasattr(config, "workerinput"):
        return
    from testinfra._reaper import list_resources

    # Kept by this process (with addresses) or by xdist workers (found by their markers).
    local = {service.resource_id: service for service in manager.kept}
    kept = [r for r in list_resources(run=manager.run_id) if r.kept and r.kind != "network"]
    if not kept:
        return
    terminalreporter.section("testinfra: services kept after failed tests")
    for resource in kept:
        service = local.get(resource.id)
        where = f" at {service.url}" if service else ""
        how = f"docker logs {resource.id}" if resource.kind == "container" else f"pid {resource.id}"
        terminalreporter.write_line(f"{resource.name}{where} ({resource.kind}: {how})")
    terminalreporter.write_line(f"remove them with: python -m testinfra reap --kept --run {manager.run_id}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("testinfra_docker") is None:
        return
    problem = _docker_problem(item.config)
    if problem is None:
        return
    if item.config.stash[manager_key].require_docker:
        pytest.fail(f"this test needs a Docker engine, and Docker is required here: {problem}")
    pytest.skip(f"no Docker engine on this machine: {problem}")


def _docker_problem(config: pytest.Config) -> str | None:
    """Why no Docker engine can be used, or None; asked once per session, not once per test."""
    if docker_problem_key not in config.stash:
        from testinfra._docker import connect
        from testinfra._errors import BackendUnavailableError

        try:
            connect().close()
            config.stash[docker_problem_key] = None
        except BackendUnavailableError as exc:
            config.stash[docker_problem_key] = str(exc)
    return config.stash[docker_problem_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        services = [value for value in funcargs.values() if isinstance(value, Service)]
        for title, body in failure_report(services):
            report.sections.append((title, body))
        if item.config.stash[manager_key].keep_on_failure:
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


@pytest.fixture(scope="session")
def testinfra_manager(pytestconfig: pytest.Config) -> Manager:
    """The manager of this test process: `start(spec)` / `release(service)` for ad-hoc services."""
    return pytestconfig.stash[manager_key]


@pytest.fixture
def tcp_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that no other testinfra user on this machine gets while the test runs."""
    with reserve_port() as reservation:
        yield reservation.port


@pytest.fixture
def tcp_port_factory() -> Iterator[Callable[[], int]]:
    """Call it for as many distinct reserved ports as the test needs."""
    reservations: list[PortReservation] = []

    def factory() -> int:
        reservations.append(reserve_port())
        return reservations[-1].port

    yield factory
    for reservation in reservations:
        reservation.release()
