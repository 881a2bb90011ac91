"""Regression tests of the adversarial pass: hostile neighbours, other namespaces, faults, bad input.

Each test names the defect it guards against; without the fix it fails.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from testinfra import HttpCheck
from testinfra import ImageNotFoundError
from testinfra import LogCheck
from testinfra import Manager
from testinfra import ServiceGoneError
from testinfra import ServiceNotReadyError
from testinfra import ServiceSpec
from testinfra import Settings
from testinfra import StateDirError
from testinfra import TcpCheck
from testinfra._backends.process import ProcessBackend
from testinfra._child import child_env
from testinfra._child import spawn
from testinfra._owner import Owner
from testinfra._owner import process_start_time
from testinfra._owner import wait_for_any_exit
from testinfra._ports import reserve_port
from testinfra._reaper import sweep
from testinfra._statedir import StateDir
from testinfra._statedir import private_dir
from testinfra._statedir import touch
from testinfra._statedir import write_record
from testinfra.conftest import ADDRESSES
from testinfra.conftest import image_or_address
from testinfra.conftest import report
from testinfra.conftest import run_resources

NOBODY = 65534
SLEEPER = ("{python}", "-c", "import time; time.sleep(3600)")
WEB = ("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}")
CLEAN_TIMEOUT = 20.0
# Long enough to notice a death, short enough to keep the suite quick; a living process makes
# the test wait this long, a killed one ends the wait at once.
STILL_ALIVE = 1.0

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (another uid, another pid namespace)")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateDir:
    """A state directory of this test's own, for every Manager and sweep it makes."""
    monkeypatch.setenv("TESTINFRA_STATE_DIR", str(tmp_path / "state"))
    return StateDir(Settings.from_env().state_dir)


def dead_owner() -> Owner:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    me = Owner.me()
    return Owner(gone.pid, 1, me.pidns, me.boot)


def plant_record(state: StateDir, pid: int, start_time: int | None, owner: Owner) -> Path:
    path = state.sub("processes") / f"planted-{pid}.json"
    record = {
        "run": "planted",
        "service": "victim",
        "owner": str(owner),
        "owner_pid": owner.pid,
        "owner_start_time": owner.start,
        "pid": pid,
        "start_time": start_time,
        "port": 0,
        "log": "",
        "workdir": None,
        "kept": False,
    }
    write_record(path, record)
    return path


# -- 1. state directory and files that another user could hijack -------------------------------


@needs_root
def test_a_state_directory_another_user_created_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(StateDirError, match=f"belongs to uid {NOBODY}, not to you"):
        private_dir(theirs)
    assert list(theirs.iterdir()) == []
    report("another user's state directory", "both")


def test_a_state_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StateDirError, match="is not a directory"):
        private_dir(tmp_path / "link")


def test_an_open_state_directory_of_ours_is_closed(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)  # (mkdir's mode is masked by the umask)
    private_dir(tmp_path / "open")
    assert (tmp_path / "open").stat().st_mode & 0o777 == 0o700


def test_a_lock_file_planted_as_a_symlink_is_never_followed(
    state: StateDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    with reserve_port(state) as probe:
        port = probe.port
    (state.sub("ports") / f"{port}.lock").symlink_to(victim)
    with pytest.raises(StateDirError, match="is a symlink, which testinfra never follows"):
        reserve_port(state, range(port, port + 1))
    assert victim.read_text() == "precious"


def test_files_are_private_whatever_the_umask(state: StateDir) -> None:
    old = os.umask(0)
    try:
        touch(state.sub("runs") / "touched")
        write_record(state.sub("runs") / "record.json", {"a": 1})
        reservation = reserve_port(state)
    finally:
        os.umask(old)
    try:
        for path in (state.sub("runs") / "touched", state.sub("runs") / "record.json"):
            assert path.stat().st_mode & 0o777 == 0o600
        assert (state.sub("ports") / f"{reservation.port}.lock").stat().st_mode & 0o777 == 0o600
        assert state.root.stat().st_mode & 0o777 == 0o700
    finally:
        reservation.release()


@needs_root
def test_the_reaper_never_signals_a_process_of_another_uid(state: StateDir) -> None:
    def become_nobody() -> None:
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    theirs = subprocess.Popen(["sleep", "3600"], preexec_fn=become_nobody)
    try:
        plant_record(state, theirs.pid, process_start_time(theirs.pid), dead_owner())
        backends = [ProcessBackend(state)]
        assert [r.name for r in sweep(Settings.from_env(), state, backends)] == ["victim"]
        assert not wait_for_any_exit([theirs.pid], STILL_ALIVE), "another user's process was killed"
    finally:
        theirs.kill()
        theirs.wait()


def test_the_reaper_never_signals_a_reused_pid(state: StateDir) -> None:
    ours = subprocess.Popen(["sleep", "3600"], start_new_session=True)
    try:
        start = process_start_time(ours.pid)
        assert start is not None
        plant_record(state, ours.pid, start - 1, dead_owner())  # the pid, but not that process
        sweep(Settings.from_env(), state, [ProcessBackend(state)])
        assert not wait_for_any_exit([ours.pid], STILL_ALIVE), "a process with a reused pid was killed"
    finally:
        ours.kill()
        ours.wait()


# -- 2. runs in another pid namespace ---------------------------------------------------------


def sweep_from_another_pid_namespace() -> None:
    code = (
        "from testinfra._backends import open_all\n"
        "from testinfra._reaper import sweep\n"
        "from testinfra._settings import Settings\n"
        "from testinfra._statedir import StateDir\n"
        "settings = Settings.from_env()\n"
        "state = StateDir(settings.state_dir)\n"
        "backends, _ = open_all(settings, state)\n"
        "print([r.name for r in sweep(settings, state, backends)])\n"
    )
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@needs_root
@pytest.mark.parametrize("backend", ["process", pytest.param("docker", marks=pytest.mark.testinfra_docker)])
def test_a_sweep_in_another_pid_namespace_leaves_our_live_services_alone(
    state: StateDir, backend: str, pytestconfig: pytest.Config
) -> None:
    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, backend)
    spec = ServiceSpec(name="web_server1", image=image, command=WEB)
    manager = Manager(Settings(backend="docker" if backend == "docker" else "process", state_dir=state.root))
    try:
        service = manager.start(spec)
        # Inside a container with the engine's socket (or our /tmp) mounted, our pid is not visible:
        # before the fix, its sweep took us for dead and removed our service mid-test.
        sweep_from_another_pid_namespace()
        assert service.exit_code() is None
        assert [r.kind for r in run_resources(manager.run_id) if r.kind != "network"] == [
            "container" if backend == "docker" else "process"
        ]
    finally:
        manager.close()
    assert run_resources(manager.run_id) == []
    report("sweep from another pid namespace", backend)


def test_an_owner_in_another_namespace_is_never_judged_dead() -> None:
    me = Owner.me()
    stranger = Owner(4242424, 1, me.pidns + 1, me.boot)
    assert not stranger.visible and stranger.alive
    assert not Owner(4242424, 1, me.pidns, me.boot).alive


# -- 3. readiness that proves something ---------------------------------------------------------


@pytest.mark.testinfra_docker
def test_tcp_check_waits_for_the_container_not_for_dockers_proxy(pytestconfig: pytest.Config) -> None:
    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    # The service listens on 81, not on the published 80: Docker's proxy still accepts on 80.
    deaf = ServiceSpec(
        name="deaf",
        image=image,
        args=("--host", "{host}", "--port", "81"),
        ready=TcpCheck(),
        start_timeout=1.5,
    )
    manager = Manager(Settings(backend="docker"))
    try:
        with pytest.raises(ServiceNotReadyError, match="not ready after 1.5s"):
            manager.start(deaf)
        listening = ServiceSpec(name="listening", image=image, ready=TcpCheck())
        assert manager.start(listening).exit_code() is None
    finally:
        manager.close()


def test_tcp_check_waits_for_a_process_that_binds_late(state: StateDir) -> None:
    late = (
        "import socket, sys, time\n"
        "print('booting', flush=True)\n"
        "time.sleep(0.3)\n"  # the service's own slowness, not the test's
        "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "print('listening', flush=True)\n"
        "time.sleep(3600)\n"
    )
    spec = ServiceSpec(name="late", command=("{python}", "-c", late, "{port}"), ready=TcpCheck())
    manager = Manager(Settings(backend="process", state_dir=state.root))
    try:
        service = manager.start(spec)
        assert "listening" in service.logs()
    finally:
        manager.close()


@pytest.mark.testinfra_docker
def test_log_check_in_a_container_sees_only_this_starts_output(pytestconfig: pytest.Config) -> None:
    from testinfra import LogCheck

    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    spec = ServiceSpec(name="web_server1", image=image, ready=LogCheck("Uvicorn running on"))
    manager = Manager(Settings(backend="docker"))
    try:
        service = manager.start(spec)
        service.restart()  # waits for the line again: the first start's line does not count
        assert service.logs().count("Uvicorn running on") == 2
    finally:
        manager.close()


# -- 7. a service started from a thread that ends ---------------------------------------------


def test_a_local_service_started_from_a_short_lived_thread_outlives_the_thread(state: StateDir) -> None:
    manager = Manager(Settings(backend="process", state_dir=state.root))
    started = []
    try:
        thread = threading.Thread(
            target=lambda: started.append(manager.start(ServiceSpec(name="web", command=WEB)))
        )
        thread.start()
        thread.join()
        (service,) = started
        # The kernel's parent-death signal follows the thread that forked: it used to fire here.
        assert not wait_for_any_exit([int(service.resource_id)], STILL_ALIVE), "killed when its thread ended"
        assert service.exit_code() is None
    finally:
        manager.close()


# -- 9. state directory faults ----------------------------------------------------------------


def test_a_relative_state_directory_is_made_absolute_for_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESTINFRA_STATE_DIR", "relative/state")
    assert Settings.from_env().state_dir == tmp_path / "relative/state"


def test_a_full_disk_when_the_record_is_written_leaves_no_untracked_process(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []

    def spawn_and_note(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = spawn(*args, **kwargs)
        spawned.append(proc.pid)
        return proc

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("testinfra._backends.process.spawn", spawn_and_note)
    monkeypatch.setattr("testinfra._statedir.os.replace", disk_full)
    manager = Manager(Settings(backend="process", state_dir=state.root))
    try:
        with pytest.raises(StateDirError, match="No space left on device"):
            manager.start(ServiceSpec(name="web", command=WEB))
    finally:
        monkeypatch.undo()
        manager.close()
    (pid,) = spawned
    assert process_start_time(pid) is None, "the service runs on, with no record to find it by"
    assert list(state.sub("processes").iterdir()) == []
    report("disk full writing a record", "process")


def test_malformed_records_are_skipped_not_fatal(state: StateDir) -> None:
    (state.sub("processes") / "garbage.json").write_text("{not json")
    write_record(state.sub("processes") / "partial.json", {"pid": "x"})
    write_record(state.sub("processes") / "list.json", [1, 2])
    manager = Manager(Settings(backend="process", state_dir=state.root))
    try:
        assert manager.start(ServiceSpec(name="web", command=WEB)).exit_code() is None
    finally:
        manager.close()
    assert len(list(state.sub("processes").iterdir())) == 3  # never acted upon


def test_a_stale_run_directory_is_swept(state: StateDir) -> None:
    stale = state.run_dir("stalerun")
    touch(stale / "watchdog.log")
    owners = state.sub("runs", "stalerun", "owners")
    touch(owners / str(dead_owner()))
    # Runs whose owners died before their watchdog started: one made long ago goes; one made a
    # moment ago may still be starting, and one whose owner lives is, so both stay.
    orphaned, starting, live = state.run_dir("orphaned"), state.run_dir("starting"), state.run_dir("live")
    touch(state.sub("runs", "orphaned", "owners") / str(dead_owner()))
    touch(state.sub("runs", "starting", "owners") / str(dead_owner()))
    touch(state.sub("runs", "live", "owners") / str(Owner.me()))
    long_ago = time.time() - 3600
    for directory in (orphaned, live):
        os.utime(directory, (long_ago, long_ago))
    sweep(Settings.from_env(), state, [ProcessBackend(state)])
    assert not stale.exists()
    assert not orphaned.exists()
    assert starting.exists() and live.exists()


# -- 11. errors that were raw or wrong --------------------------------------------------------


@pytest.mark.testinfra_docker
def test_a_container_removed_from_outside_is_reported_as_gone(pytestconfig: pytest.Config) -> None:
    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    manager = Manager(Settings(backend="docker"))
    try:
        service = manager.start(ServiceSpec(name="web_server1", image=image))
        client = docker.from_env()
        client.api.remove_container(service.resource_id, force=True)
        client.close()
        with pytest.raises(ServiceGoneError, match="removed from outside testinfra"):
            service.kill()
    finally:
        manager.close()


@pytest.mark.testinfra_docker
@pytest.mark.parametrize("image", ["Not A Reference!", "labrador/never-built:latest"])
def test_a_bad_or_missing_image_is_an_image_error(image: str) -> None:
    manager = Manager(Settings(backend="docker"))
    try:
        with pytest.raises(ImageNotFoundError, match=f"{image!r} of service 'web'"):
            manager.start(ServiceSpec(name="web", image=image, ready=HttpCheck()))
    finally:
        manager.close()
    assert run_resources(manager.run_id) == []


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testinfra", *args], capture_output=True, text=True, env=child_env(env)
    )


def test_the_cli_says_when_it_could_not_ask_the_engine(state: StateDir, tmp_path: Path) -> None:
    result = cli("ls", DOCKER_HOST=f"unix://{tmp_path}/none.sock", TESTINFRA_STATE_DIR=str(state.root))
    assert result.returncode == 1
    assert "warning: docker resources not listed: no Docker engine answers" in result.stderr


def test_the_cli_on_a_state_directory_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for command in ("ls", "doctor", "reap"):
        result = cli(command, TESTINFRA_STATE_DIR=str(tmp_path / "file"))
        assert result.returncode == 2, result.stderr
        assert "error: testinfra state directory" in result.stderr


def test_reap_all_does_not_remove_running_services_without_asking(state: StateDir) -> None:
    manager = Manager(Settings(backend="process", state_dir=state.root))
    try:
        service = manager.start(ServiceSpec(name="web", command=WEB))
        # (--run: never --all on the whole machine from a test, other test processes run beside it)
        result = cli("reap", "--all", "--run", manager.run_id, TESTINFRA_STATE_DIR=str(state.root))
        assert "in use by running tests and were left alone; pass --yes" in result.stderr
        assert service.exit_code() is None
        result = cli("reap", "--all", "--yes", "--run", manager.run_id, TESTINFRA_STATE_DIR=str(state.root))
        assert f"removed process {service.resource_id}" in result.stdout
    finally:
        manager.close()


def test_the_watchdog_of_a_process_run_never_opens_docker(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watchdog is a fork of a test process whose other threads may have been importing the
    # Docker SDK at that moment: importing it in the fork would wait for their lock forever.
    import testinfra._backends as backends
    from testinfra._watchdog import _Watch
    from testinfra._watchdog import mark_backend

    opened: list[str] = []
    real = backends.open_backend

    def spy(kind, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(kind)
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(backends, "open_backend", spy)
    mark_backend(state, "processrun", "process")
    watch = _Watch(Settings(backend="process", state_dir=state.root), "processrun")
    assert watch.reap(everything=True)
    assert opened == ["process"]


@pytest.mark.testinfra_docker
def test_the_state_directory_deleted_mid_run_does_not_stop_the_watchdog(
    state: StateDir, pytestconfig: pytest.Config
) -> None:
    image = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    code = (
        "import sys\n"
        "from testinfra import Manager, ServiceSpec, Settings\n"
        "manager = Manager(Settings(backend='docker'))\n"
        f"manager.start(ServiceSpec(name='web_server1', image={image!r}))\n"
        "print(manager.run_id, flush=True)\n"
        "sys.stdin.read()\n"
    )
    session = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert session.stdout is not None
        run = session.stdout.readline().strip()
        assert [r.kind for r in run_resources(run)] == ["container"]
        shutil.rmtree(state.root)  # the run's owner set and records go with it
        session.kill()
        session.communicate()
        # The watchdog goes on with the owners it knew: the container goes, and it says what happened.
        deadline = time.monotonic() + CLEAN_TIMEOUT
        while run_resources(run) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run_resources(run) == []
        report(
            "state directory deleted, then SIGKILL", "docker", time.monotonic() - (deadline - CLEAN_TIMEOUT)
        )
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()


@pytest.mark.testinfra_docker
def test_an_image_the_engine_lacks_is_loaded_from_its_archive_once(
    tmp_path: Path, pytestconfig: pytest.Config, state: StateDir
) -> None:
    # An image of our own (web_server1 plus a label), saved, then removed from the engine: as on a
    # machine that got the archive from a remote cache and never built the image.
    base = image_or_address(ADDRESSES["web_server1"], pytestconfig, "docker")
    client = docker.from_env()
    dockerfile = io.BytesIO(f"FROM {base}\nLABEL org.labrador.test={tmp_path.name}\n".encode())
    image, _ = client.images.build(fileobj=dockerfile, rm=True)
    image_id = image.id
    assert image_id is not None
    archive = tmp_path / "src.python.app" / "image.docker-image.tar"
    archive.parent.mkdir()
    with archive.open("wb") as out:
        for chunk in image.save():
            out.write(chunk)
    # noprune: the base is an untagged image loaded from its archive, and pruning would take it
    # from every other test of this engine.
    client.images.remove(image_id, noprune=True)
    (archive.parent / "image.docker-info.json").write_text(
        json.dumps({"version": 1, "image_id": image_id, "archive": archive.name})
    )
    manager = Manager(Settings(backend="docker", state_dir=state.root), image_roots=[tmp_path])
    try:
        service = manager.start(ServiceSpec(name="web", image="src/python/app:image"))
        assert service.exit_code() is None
        assert client.images.get(image_id).id == image_id
    finally:
        manager.close()
        client.images.remove(image_id, force=True, noprune=True)
        client.close()


def test_log_reads_take_only_what_is_new_or_the_tail_whatever_the_log_size(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = Manager(Settings(backend="process", state_dir=state.root))
    try:
        chatty = "import sys, time\nsys.stdout.write('x' * 20_000_000 + '\\nready\\n'); sys.stdout.flush(); time.sleep(3600)"
        service = manager.start(
            ServiceSpec(name="chatty", command=("{python}", "-c", chatty), ready=LogCheck("^ready$"))
        )
        read: list[int] = []

        class Counted:
            """A file that counts the bytes read from it."""

            def __init__(self, file: Any) -> None:
                self._file = file

            def __enter__(self) -> Counted:
                return self

            def __exit__(self, *exc: object) -> None:
                self._file.close()

            def read(self, size: int = -1) -> bytes:
                data: bytes = self._file.read(size)
                read.append(len(data))
                return data

            def __getattr__(self, name: str) -> Any:
                return getattr(self._file, name)

        monkeypatch.setattr(
            "testinfra._backends.process.open", lambda *a, **k: Counted(open(*a, **k)), raising=False
        )
        # A LogCheck's probes after its first, and a failure report's tail: each reads what is new
        # since the last probe, or the end of the file, not the 20 MB before it.
        _, cursor = service._instance.read_logs(None)  # (the first probe reads this start's output)
        read.clear()
        for _ in range(20):
            _, cursor = service._instance.read_logs(cursor)
        assert service.logs(tail=1) == "ready"
        assert sum(read) < 1_000_000, f"read {sum(read)} bytes for 20 probes and a tail"
    finally:
        monkeypatch.undo()
        manager.close()
