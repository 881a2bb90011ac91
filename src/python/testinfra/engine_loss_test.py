"""Engine loss: the Docker engine dies, freezes or comes back under a session, and nothing is left.

Each test runs real sessions on a private engine: a dockerd and a containerd of its own (own data
root, exec root and sockets) in a network namespace of its own, where it may make its own docker0
and iptables rules without touching the machine's engine. The sessions run in that
namespace too (its published ports are there). The engine is killed (SIGKILL: the socket stays,
nothing answers), frozen (SIGSTOP: requests hang) and started again on the same data root.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from testinfra._backends import open_backend
from testinfra._backends.base import Resource
from testinfra._child import child_env
from testinfra._pants import locate_image
from testinfra._settings import DEFAULT_LABEL
from testinfra._settings import Settings
from testinfra._statedir import StateDir
from testinfra.conftest import ADDRESSES
from testinfra.conftest import report

pytestmark = pytest.mark.testinfra_docker

NETNS_DIR = Path("/run/netns")
# Bounds on conditions, never sleeps: a healthy machine meets each in a fraction of it.
ENGINE_START = 60.0
SESSION_READY = 120.0
CLEAN_TIMEOUT = 60.0
# dockerd stops its containers on SIGTERM (10 s grace each) before it exits.
ENGINE_STOP = 60.0
POLL = 0.05
WATCHDOG_LOG_LINE = "the engine does not answer"
TOOLS = ("ip", "nsenter", "dockerd", "containerd", "umount")
# What dockerd gives the containerd it would start itself, under our root; no CRI (Kubernetes) plugin.
CONTAINERD_CONFIG = """
version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{root}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"
"""

# -- a private engine -----------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until it holds; returns the monotonic time it did, fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        time.sleep(POLL)
    return time.monotonic()


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] not in "ZX"


class PrivateEngine:
    """dockerd with its own data root, exec root, pid file and socket under `root`, in the network
    namespace `netns`: killed, frozen and restarted at will, and removed with all it made."""

    def __init__(self, root: Path, netns: str) -> None:
        self.root = root
        self.netns = netns
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        self._dockerd: subprocess.Popen[bytes] | None = None
        self._containerd: subprocess.Popen[bytes] | None = None
        # The environment of the module, not of the test that restarts the engine: the engine must
        # not look like one of that test's processes (see `test_processes`).
        self._env = dict(os.environ)

    def enter(self, argv: Sequence[str]) -> list[str]:
        """`argv`, to run in the engine's network namespace.

        nsenter rather than `ip netns exec`, which also remounts /sys: dockerd would lose the
        cgroup mounts under it.
        """
        return ["nsenter", f"--net={NETNS_DIR / self.netns}", *argv]

    def create_namespace(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        # The published ports are on 127.0.0.1 in there.
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True, capture_output=True)

    def start(self) -> float:
        """Start dockerd (again, on the same data root); returns the monotonic time it answered."""
        assert not self.running, "the engine runs already"
        if self._containerd is None:
            self._start_containerd()
        # A killed dockerd leaves its pid file; the next one refuses to start while it names a live pid.
        (self.root / "docker.pid").unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self._dockerd = subprocess.Popen(
                self.enter(
                    [
                        "dockerd",
                        "--containerd",
                        str(self.root / "containerd.sock"),
                        "--data-root",
                        str(self.root / "data"),
                        "--exec-root",
                        str(self.root / "exec"),
                        "--pidfile",
                        str(self.root / "docker.pid"),
                        "-H",
                        self.host,
                    ]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                # A Ctrl-C at the terminal is for pytest, whose fixture then stops the engine in order.
                start_new_session=True,
            )
        deadline = time.monotonic() + ENGINE_START
        while not self.answers():
            if self._dockerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private dockerd did not start; its log ends:\n{self.log_tail()}")
            time.sleep(POLL)
        return time.monotonic()

    def _start_containerd(self) -> None:
        """containerd runs apart from dockerd (as under systemd), so the engine can die alone.

        (A containerd that dockerd starts itself dies with it, and a new dockerd waits for the old
        one as long as its zombie is not reaped, which no init here promises to do quickly.)
        """
        config = self.root / "containerd.toml"
        config.write_text(CONTAINERD_CONFIG.format(root=self.root))
        with open(self.root / "containerd.log", "ab") as log:
            self._containerd = subprocess.Popen(
                self.enter(["containerd", "--config", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        _wait(lambda: (self.root / "containerd.sock").exists(), ENGINE_START, "containerd to listen")

    @property
    def running(self) -> bool:
        return self._dockerd is not None and self._dockerd.poll() is None

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the engine answers a ping (a raw request: no client to leak on failure)."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return sock.recv(64).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def kill(self) -> None:
        """Engine lost: dockerd dies at once (its socket file stays, and refuses connections)."""
        assert self._dockerd is not None
        self._dockerd.kill()
        self._dockerd.wait()

    def freeze(self) -> None:
        """Engine hung: requests are accepted and never answered."""
        assert self._dockerd is not None
        self._dockerd.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._dockerd is not None and self._dockerd.poll() is None:
            self._dockerd.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def client(self) -> Iterator[docker.DockerClient]:
        problem = None
        with warnings.catch_warnings():
            # The SDK leaks its socket when the engine does not answer (as testinfra's connect() says).
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                client = docker.DockerClient(base_url=self.host, timeout=60)
            except docker.errors.DockerException as exc:
                problem = str(exc)
            if problem is not None:
                gc.collect()  # the failed connection's socket is freed here, under the filter
        if problem is not None:
            raise RuntimeError(f"the private engine does not answer: {problem}")
        try:
            yield client
        finally:
            client.close()

    def load(self, images: Sequence[tuple[str, Path | None]]) -> None:
        """Give this engine `images` (id, archive): from the archive Pants saved beside the image's
        docker-info.json if there is one, else from the machine's engine (DOCKER_HOST)."""
        shared = docker.from_env(timeout=300)
        try:
            with self.client() as client:
                for image, archive in images:
                    if archive is not None and archive.is_file():
                        with archive.open("rb") as stream:
                            client.images.load(stream)
                    else:
                        client.images.load(b"".join(shared.api.get_image(image)))
                    client.images.get(image)  # raises if the load did not make it
        finally:
            shared.close()

    def clear(self) -> list[str]:
        """Remove every container and network (the engine is ours alone); returns what it removed."""
        removed = []
        with self.client() as client:
            for container in client.api.containers(all=True):
                client.api.remove_container(container["Id"], force=True)
                removed.append(f"container {container['Id'][:12]}")
            for network in client.api.networks():
                if network["Name"] not in ("bridge", "host", "none"):
                    client.api.remove_network(network["Id"])
                    removed.append(f"network {network['Id'][:12]}")
        return removed

    def events(self, since: float, **filters: str) -> list[dict[str, Any]]:
        """The engine's events since `since` (time.time()) that match `filters`."""
        with self.client() as client:
            stream = client.events(since=int(since), until=int(time.time()) + 1, filters=filters, decode=True)
            return [event for event in stream if event["timeNano"] >= since * 1e9]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def namespace_pids(self) -> list[int]:
        if not (NETNS_DIR / self.netns).exists():
            return []
        found = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    def test_processes(self) -> list[int]:
        """The processes of the running test in the namespace: its sessions, and their watchdogs
        (forks of them), known by the test's own state directory in their environment."""
        marker = f"TESTINFRA_STATE_DIR={os.environ['TESTINFRA_STATE_DIR']}".encode()
        found = []
        for pid in self.namespace_pids():
            try:
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(pid)
            except OSError:
                continue  # gone meanwhile
        return found

    def close(self) -> list[str]:
        """Stop the engine and remove everything it and the tests made (processes, mounts, the
        namespace, the directory), whatever state the tests left it in; returns what went wrong."""
        problems: list[str] = []

        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:
                problems.append(f"{what}: {exc!r}")

        self.thaw()
        if not self.running and (self.root / "data").is_dir():
            # Started again to remove its containers the way it knows best.
            attempt("restarting the engine to empty it", self.start)
        if self.running:
            attempt("removing containers and networks", self.clear)
        for process in (self._dockerd, self._containerd):
            if process is not None:
                attempt("stopping the engine", lambda: self._stop(process))  # noqa: B023 (called at once)
        attempt("killing what is left in the namespace", self._kill_namespace)
        attempt("killing containers the engine could not remove", self._kill_containers)
        if (NETNS_DIR / self.netns).exists():
            attempt("deleting the namespace", lambda: self._run("ip", "netns", "delete", self.netns))
        attempt("unmounting", self._unmount)
        attempt("removing the directory", lambda: shutil.rmtree(self.root))
        return problems

    @staticmethod
    def _run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(ENGINE_STOP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _kill_namespace(self) -> None:
        """SIGKILL every process left in the namespace (sessions, watchdogs, shims, proxies): all
        of them were started by this fixture or by what it started."""
        pids = self.namespace_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait(lambda: not any(_pid_alive(pid) for pid in pids), 30, "processes of the namespace to die")

    def _kill_containers(self) -> None:
        """A container whose engine could not be started again still runs (in its own namespaces):
        find its processes by the container's cgroup."""
        containers = self.root / "data" / "containers"
        ids = [path.name for path in containers.iterdir()] if containers.is_dir() else []
        pids = []
        for container in ids:
            for procs in Path("/sys/fs/cgroup").glob(f"**/{container}/cgroup.procs"):
                pids += [int(pid) for pid in procs.read_text().split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait(lambda: not any(_pid_alive(pid) for pid in pids), 30, "processes of containers to die")

    def _unmount(self) -> None:
        """dockerd mounts its data root on itself, container layers and network namespaces under
        its roots; a stopped dockerd leaves some, a killed one all of them."""
        prefix = str(self.root) + "/"
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")  # (octal escapes, e.g. \040)
            if point.startswith(prefix):
                points.append(point)
        for point in sorted(points, key=len, reverse=True):
            self._run("umount", "--lazy", point)


def missing_prerequisites() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root (network namespaces, a second dockerd)")
    return missing


@pytest.fixture(scope="module")
def private_engine(pytestconfig: pytest.Config) -> Iterator[PrivateEngine]:
    """One private engine for the module, with Labrador's images; each test restarts it at will."""
    missing = missing_prerequisites()
    if missing:
        # (The module is marked testinfra_docker: it is skipped where no engine exists at all.)
        pytest.fail(
            "the engine-loss tests run a private Docker engine in a network namespace of its own and "
            f"need {', '.join(missing)}; run them as root on a machine with iproute2, util-linux and dockerd"
        )
    roots = [pytestconfig.invocation_params.dir, pytestconfig.rootpath]
    images = [locate_image(address, roots) for address in ADDRESSES.values()]
    engine = PrivateEngine(Path(tempfile.mkdtemp(prefix="testinfra-engine-")), f"testinfra-el-{os.getpid()}")
    try:
        engine.create_namespace()
        engine.start()
        engine.load(images)
        yield engine
    finally:
        problems = engine.close()
    assert not problems, f"the private engine was not removed cleanly: {problems}"


@pytest.fixture
def engine(
    private_engine: PrivateEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[PrivateEngine]:
    """The private engine, running and empty, for this test's sessions (DOCKER_HOST) and a state
    directory of this test's own; afterwards its sessions and their watchdogs are gone, and so
    is whatever they left on the engine."""
    state = tmp_path / "state"
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)
    monkeypatch.setenv("TESTINFRA_STATE_DIR", str(state))
    try:
        yield private_engine
    finally:
        left = private_engine.test_processes()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait(lambda: not any(_pid_alive(pid) for pid in left), 30, "the test's sessions to die")
        private_engine.thaw()
        if not private_engine.running:
            private_engine.start()
        private_engine.clear()


@pytest.fixture
def backend() -> str:
    """(For conftest's `inner`.) The inner sessions of this module run on Docker (the private engine)."""
    return "docker"


# -- sessions on the private engine ---------------------------------------------------------------

# Helpers of the inner tests: say where the run is, wait for the outer test's go.
HANDSHAKE = """
import json
import os
import pathlib
import time


def tell(manager, **extra):
    info = {"run": manager.run_id, "pid": os.getpid(), **extra}
    # Written aside, then renamed: the outer test never reads a half-written file.
    pathlib.Path("ready.json.tmp").write_text(json.dumps(info))
    os.replace("ready.json.tmp", "ready.json")


def wait_for(name, timeout=300):
    path = pathlib.Path(name)
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{name} never came"
        time.sleep(0.02)
"""


class Session:
    """An inner pytest session in the engine's namespace, its output in session.log."""

    def __init__(self, engine: PrivateEngine, inner: pytest.Pytester, test: str) -> None:
        self.path = inner.path
        inner.makepyfile(handshake=HANDSHAKE, test_engine=test)
        with open(self.path / "session.log", "wb") as log:
            self.proc = subprocess.Popen(
                engine.enter(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_engine.py"]
                ),
                cwd=self.path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the outer test decides when it ends
            )

    def ready(self) -> dict[str, Any]:
        marker = self.path / "ready.json"
        deadline = time.monotonic() + SESSION_READY
        while not marker.exists():
            assert self.proc.poll() is None, f"the session ended early:\n{self.output()}"
            assert time.monotonic() < deadline, f"the session was not ready in time:\n{self.output()}"
            time.sleep(POLL)
        info: dict[str, Any] = json.loads(marker.read_text())
        return info

    def go(self, name: str = "go") -> None:
        (self.path / name).touch()

    def wait_for(self, name: str) -> None:
        _wait(lambda: (self.path / name).exists() or self.proc.poll() is not None, SESSION_READY, name)
        assert (self.path / name).exists(), f"the session ended before {name}:\n{self.output()}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def wait(self, timeout: float = SESSION_READY) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return (self.path / "session.log").read_text(errors="replace")


def leftovers(run: str) -> list[Resource]:
    """What is left of `run` on the engine and as processes; raises if the engine does not answer
    (no answer is not "nothing left")."""
    settings = Settings.from_env()
    state = StateDir(settings.state_dir)
    backends = [open_backend("docker", settings, state), open_backend("process", settings, state)]
    try:
        return [resource for backend in backends for resource in backend.resources(run)]
    finally:
        for backend in backends:
            backend.close()


class Watchdog:
    """What the outer test sees of a run's watchdog: its log, its lock, its run directory."""

    def __init__(self, run: str) -> None:
        self.run_dir = Settings.from_env().state_dir / "runs" / run

    def log(self) -> str:
        try:
            return (self.run_dir / "watchdog.log").read_text()
        except FileNotFoundError:
            return ""

    def on_duty(self) -> bool:
        """Whether a watchdog holds the run's lock (taken without creating anything)."""
        try:
            fd = os.open(self.run_dir / "watchdog.lock", os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def wait_until_it_tried(self, attempts: int = 1) -> None:
        """Until it has noticed the death and found the engine not answering `attempts` times."""
        _wait(
            lambda: self.log().count(WATCHDOG_LOG_LINE) >= attempts,
            CLEAN_TIMEOUT,
            f"the watchdog to try the engine {attempts} time(s)",
        )


def seconds_until_clean(engine: PrivateEngine, run: str, since: float) -> float:
    """Seconds from `since` until nothing of `run` is left, then wait for its watchdog to finish
    (its run directory removed, its process gone)."""
    gone = _wait(lambda: not leftovers(run), CLEAN_TIMEOUT, f"the resources of run {run} to go")
    watchdog = Watchdog(run)
    _wait(
        lambda: not watchdog.run_dir.exists() and not engine.test_processes(),
        CLEAN_TIMEOUT,
        "the watchdog to finish",
    )
    return gone - since


# -- the scenarios --------------------------------------------------------------------------------

# A session-scoped web_server2, its web_server1 and their network; the test says where they are
# and waits for a go that never comes (the outer test kills the session).
SERVICES_RUN = """
from handshake import tell
from handshake import wait_for
from specs import WS2
from testinfra import service_fixture

web_server2 = service_fixture(WS2, scope="session")


def test_blocks(web_server2, testinfra_manager):
    tell(testinfra_manager)
    wait_for("go")
"""


def test_engine_lost_while_services_run_then_the_session_is_killed(
    engine: PrivateEngine, inner: pytest.Pytester
) -> None:
    session = Session(engine, inner, SERVICES_RUN)
    run = session.ready()["run"]
    assert sorted(r.kind for r in leftovers(run)) == ["container", "container", "network"]
    engine.kill()
    session.kill()
    watchdog = Watchdog(run)
    watchdog.wait_until_it_tried(attempts=2)
    # It neither gave up nor forgot the run while the engine was away.
    assert watchdog.on_duty() and watchdog.run_dir.is_dir(), watchdog.log()
    back = engine.start()
    seconds = seconds_until_clean(engine, run, back)
    report("engine lost, then session SIGKILL", "docker", seconds)


# The session's services are torn down after the engine died: a fixture torn down before them
# (it uses them) says so and waits for the outer test to kill the engine.
TEARDOWN = """
import pytest
from handshake import tell
from handshake import wait_for
from specs import WS2
from testinfra import service_fixture

web_server2 = service_fixture(WS2, scope="session")


@pytest.fixture(scope="session")
def engine_dies_at_teardown(web_server2, testinfra_manager):
    yield
    tell(testinfra_manager)
    wait_for("go")


def test_passes(web_server2, engine_dies_at_teardown):
    assert web_server2.exit_code() is None
"""


def test_engine_lost_while_the_session_tears_down(engine: PrivateEngine, inner: pytest.Pytester) -> None:
    session = Session(engine, inner, TEARDOWN)
    run = session.ready()["run"]
    engine.kill()
    session.go()
    assert session.wait() == 0, session.output()
    # The test passed; that its services could not be removed yet is one line at the very end,
    # with no traceback through the Docker SDK and the HTTP layer.
    lines = session.output().strip().splitlines()
    assert "1 passed in" in lines[-2], session.output()
    assert lines[-1].startswith("testinfra: teardown incomplete (lost the Docker engine while removing")
    assert lines[-1].endswith("the run's watchdog keeps trying")
    assert not [line for line in lines if "Traceback" in line or "requests" in line or "urllib3" in line]
    watchdog = Watchdog(run)
    watchdog.wait_until_it_tried()
    assert watchdog.on_duty() and watchdog.run_dir.is_dir(), watchdog.log()
    back = engine.start()
    seconds = seconds_until_clean(engine, run, back)
    report("engine lost during teardown", "docker", seconds)


# Two starts: the first with the engine answering (the run's watchdog is on duty), the second
# sent to a frozen engine; "sent" says its create request is out, whole, and waits for an answer.
CREATE_IN_FLIGHT = """
import pathlib

import urllib3.connection
from handshake import tell
from handshake import wait_for
from specs import WS1

request = urllib3.connection.HTTPConnection.request


def request_and_tell(self, method, url, *args, **kwargs):
    request(self, method, url, *args, **kwargs)
    if method == "POST" and "/containers/create" in url:
        pathlib.Path("sent").touch()


def test_starts_twice(testinfra_manager):
    testinfra_manager.start(WS1)
    tell(testinfra_manager)
    wait_for("go")
    urllib3.connection.HTTPConnection.request = request_and_tell
    testinfra_manager.start(WS1)
"""


def test_a_create_in_flight_when_the_session_dies_lands_late_and_is_removed(
    engine: PrivateEngine, inner: pytest.Pytester
) -> None:
    session = Session(engine, inner, CREATE_IN_FLIGHT)
    run = session.ready()["run"]
    engine.freeze()
    session.go()
    session.wait_for("sent")
    session.kill()
    died = time.time()
    # The engine stays frozen until the watchdog has tried it (its ping timed out).
    watchdog = Watchdog(run)
    watchdog.wait_until_it_tried()
    assert watchdog.on_duty() and watchdog.run_dir.is_dir(), watchdog.log()
    engine.thaw()
    back = time.monotonic()
    seconds = seconds_until_clean(engine, run, back)
    # The create did land, after the session's death: the watchdog removed a container that did
    # not exist when its owner died.
    label = f"{DEFAULT_LABEL}.run={run}"
    created = engine.events(died, type="container", event="create", label=label)
    assert len(created) == 1, created
    report("create in flight, engine frozen, SIGKILL", "docker", seconds)


# A container and a local process, side by side (backend auto); the test waits for the go.
CONTAINER_AND_PROCESS = """
from handshake import tell
from handshake import wait_for
from specs import WS1
from testinfra import ServiceSpec
from testinfra import service_fixture

LOCAL = ServiceSpec(name="local", command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"))

web_server1 = service_fixture(WS1, scope="session")
local = service_fixture(LOCAL, scope="session")


def test_blocks(web_server1, local, testinfra_manager):
    tell(testinfra_manager, container=web_server1.resource_id, process=local.resource_id)
    wait_for("go")
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testinfra", *args], capture_output=True, text=True, env=child_env()
    )


def test_ls_and_reap_while_the_engine_is_down_say_so_and_list_the_processes(
    engine: PrivateEngine, inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTINFRA_BACKEND", "auto")
    session = Session(engine, inner, CONTAINER_AND_PROCESS)
    info = session.ready()
    run = info["run"]
    engine.kill()
    warning = "warning: docker resources not listed: no Docker engine answers"
    listed = cli("ls", "--run", run)
    # Not "nothing" and success: what could not be asked is said, and the exit status says it too.
    assert listed.returncode == 1, listed
    assert warning in listed.stderr
    assert f"process    {info['process']}" in listed.stdout and "in use" in listed.stdout
    assert info["container"] not in listed.stdout
    reaped = cli("reap", "--run", run)
    assert reaped.returncode == 1, reaped
    assert warning in reaped.stderr
    back = engine.start()
    listed = cli("ls", "--run", run)
    assert listed.returncode == 0, listed
    assert info["container"] in listed.stdout and info["process"] in listed.stdout
    session.go()
    assert session.wait() == 0, session.output()
    seconds = seconds_until_clean(engine, run, back)
    report("ls/reap while the engine is down", "both", seconds)


# The engine dies under a running test and does not come back before the session ends: each
# call the test makes fails with BackendUnavailableError, and the session ends with one line.
ENGINE_GONE = """
import pytest
from handshake import tell
from handshake import wait_for
from specs import WS1
from specs import WS2
from testinfra import BackendUnavailableError
from testinfra import service_fixture

web_server1 = service_fixture(WS1, scope="session")
LOST = "lost the Docker engine while"


def test_every_call_says_the_engine_is_lost(web_server1, testinfra_manager):
    tell(testinfra_manager)
    wait_for("go")
    with pytest.raises(BackendUnavailableError, match=LOST):
        web_server1.exit_code()
    with pytest.raises(BackendUnavailableError, match=LOST):
        web_server1.restart()
    with pytest.raises(BackendUnavailableError, match=LOST):
        web_server1.kill()
    with pytest.raises(BackendUnavailableError, match=LOST):
        web_server1.run_command(["true"])
    with pytest.raises(BackendUnavailableError, match=LOST):
        testinfra_manager.start(WS2)
"""


def test_engine_gone_for_the_rest_of_the_session(engine: PrivateEngine, inner: pytest.Pytester) -> None:
    session = Session(engine, inner, ENGINE_GONE)
    run = session.ready()["run"]
    engine.kill()
    session.go()
    assert session.wait() == 0, session.output()
    lines = session.output().strip().splitlines()
    assert lines[-1].startswith("testinfra: teardown incomplete (lost the Docker engine while removing")
    assert not [line for line in lines if "Traceback" in line or "requests" in line or "urllib3" in line]
    watchdog = Watchdog(run)
    watchdog.wait_until_it_tried()
    assert watchdog.on_duty() and watchdog.run_dir.is_dir(), watchdog.log()
    back = engine.start()
    seconds = seconds_until_clean(engine, run, back)
    report("engine gone for the rest of the session", "docker", seconds)
