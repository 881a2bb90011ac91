"""The process backend: a service as a local child process on a reserved port.

Each process has a record in `<state>/processes/` (written whole, before the call that started it
returns; a process whose record cannot be written is killed at once), its output in
`<state>/logs/`, and, when its command asks for `{workdir}`, a private directory in the system
temporary directory. Removing the instance, or reaping its record, removes all three.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import TypedDict
from typing import cast

from testinfra._backends.base import Endpoint
from testinfra._backends.base import Placement
from testinfra._backends.base import Resource
from testinfra._child import child_env
from testinfra._child import spawn
from testinfra._errors import ServiceError
from testinfra._errors import ServiceStartError
from testinfra._errors import SharedServiceError
from testinfra._errors import StateDirError
from testinfra._owner import Owner
from testinfra._owner import descendants
from testinfra._owner import process_start_time
from testinfra._owner import process_uid
from testinfra._owner import wait_for_any_exit
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._spec import ServiceSpec
from testinfra._spec import render
from testinfra._statedir import StateDir
from testinfra._statedir import read_record
from testinfra._statedir import write_record

_HOST = "127.0.0.1"
_LISTEN_BACKLOG = 128
_UNKNOWN_EXIT = -1
_TAIL_BLOCK = 65536
_PREFIX = "testinfra-"
# The children this process started, by pid: a handle attached by record to one of them (a shared
# service released by the process that started it) waits for it through its Popen, so it is reaped
# instead of lingering as a zombie whose Popen warns when collected.
_CHILDREN: weakref.WeakValueDictionary[int, subprocess.Popen[bytes]] = weakref.WeakValueDictionary()


class ProcessRecord(TypedDict):
    run: str
    service: str
    owner: str
    # The owner as testinfra 0.1 reads it (it shares the state directory, and fails without them).
    owner_pid: int
    owner_start_time: int
    pid: int
    start_time: int | None
    port: int
    log: str
    workdir: str | None
    kept: bool


def _tail(path: Path, lines: int | None) -> str:
    """The last `lines` lines of a file, reading only as much of its end as needed."""
    try:
        with open(path, "rb") as file:
            if lines is None:
                return file.read().decode(errors="replace")
            end = file.seek(0, os.SEEK_END)
            data = b""
            while end > 0 and data.count(b"\n") <= lines:
                step = min(_TAIL_BLOCK, end)
                end -= step
                file.seek(end)
                data = file.read(step) + data
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _own_workdir(path: str | None) -> Path | None:
    """The workdir of a record, if it is still a private directory of the kind we create."""
    if (
        not path
        or Path(path).parent != Path(tempfile.gettempdir())
        or not Path(path).name.startswith(_PREFIX)
    ):
        return None  # a damaged record: never remove what we did not create
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
        return Path(path)
    return None


def _signal_group(pid: int, start_time: int | None, sig: signal.Signals) -> None:
    """Signal the process group of `pid`, only if `pid` is still the process we started: same start
    time (a reused pid has another) and ours (we start services as ourselves, root included)."""
    if start_time is None or process_start_time(pid) != start_time or process_uid(pid) != os.geteuid():
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class ProcessInstance:
    """A service process: ours (started here, restartable) or attached to by its record."""

    def __init__(self, spec: ServiceSpec, record: ProcessRecord, record_path: Path) -> None:
        self.spec = spec
        self._record = record
        self._record_path = record_path
        self._placement: Placement | None = None
        self._env: dict[str, str] | None = None
        self._reservation: PortReservation | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        # Where this start's output begins in the log (readiness looks only at this start's).
        self._log_offset = 0

    @property
    def resource_id(self) -> str:
        return str(self._record["pid"])

    def record(self) -> dict[str, Any]:
        return {**self._record, "record_path": str(self._record_path)}

    def _values(self, listener: socket.socket | None) -> dict[str, str]:
        return {
            "python": sys.executable,
            "host": _HOST,
            "port": str(self._record["port"]),
            "fd": str(listener.fileno() if listener else -1),
            "workdir": self._record["workdir"] or "",
        }

    def start(self) -> None:
        if self._placement is None or self._env is None:
            raise SharedServiceError(
                f"service {self.spec.name!r} was started by another process (a shared service): only "
                "that process can start it again; use a private scope to restart a service in a test"
            )
        assert self.spec.command is not None
        listener = None
        if any("{fd}" in arg for arg in self.spec.command):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((_HOST, self._record["port"]))
            listener.listen(_LISTEN_BACKLOG)
        values = self._values(listener)
        argv = [render(arg, lambda peer, name: values[name]) for arg in self.spec.command]
        env = child_env(self._env) if self.spec.command[0] == "{python}" else {**os.environ, **self._env}
        try:
            with open(self._record["log"], "ab") as log:
                self._log_offset = log.tell()
                self._proc = spawn(
                    argv,
                    env=env,
                    stdout=log,
                    pass_fds=(listener.fileno(),) if listener else (),
                    die_with_parent=not self._placement.detached,
                )
        except OSError as exc:
            raise ServiceStartError(f"could not run {argv!r}: {exc}", service=self.spec.name) from exc
        finally:
            if listener is not None:
                # The child holds its own copy; ours would keep accepting connections after it dies.
                listener.close()
        self._record["pid"] = self._proc.pid
        self._record["start_time"] = process_start_time(self._proc.pid)
        _CHILDREN[self._proc.pid] = self._proc
        try:
            write_record(self._record_path, self._record)
        except StateDirError:
            # Untracked, it could outlive us unseen by `ls` and `reap`: better not to run it at all.
            self._signal(signal.SIGKILL)
            self._proc.wait()
            raise

    def endpoint(self) -> Endpoint:
        return Endpoint(_HOST, self._record["port"])

    def peer_endpoint(self) -> Endpoint:
        return self.endpoint()

    def direct_address(self) -> tuple[str, int]:
        return _HOST, self._record["port"]

    def logs(self, tail: int | None = None) -> str:
        return _tail(Path(self._record["log"]), tail)

    def read_logs(self, cursor: Any) -> tuple[str, Any]:
        try:
            with open(self._record["log"], "rb") as file:
                cursor = self._log_offset if cursor is None else cursor
                file.seek(cursor)
                data = file.read()
        except FileNotFoundError:
            return "", cursor or 0
        return data.decode(errors="replace"), cursor + len(data)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        values = self._values(None)
        command = [render(arg, lambda peer, name: values.get(name, "")) for arg in argv]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=timeout, env={**os.environ, **(self._env or {})}
            )
        except subprocess.TimeoutExpired:
            return _UNKNOWN_EXIT, f"{command} did not finish in {timeout}s"
        except OSError as exc:
            return _UNKNOWN_EXIT, f"could not run {command}: {exc}"
        return done.returncode, (done.stdout + done.stderr).decode(errors="replace")

    def exit_code(self) -> int | None:
        if self._proc is not None:
            return self._proc.poll()
        alive = process_start_time(self._record["pid"]) == self._record["start_time"]
        return None if alive else _UNKNOWN_EXIT

    def _signal(self, sig: signal.Signals) -> None:
        if self.exit_code() is None:
            _signal_group(self._record["pid"], self._record["start_time"], sig)

    def _wait(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return self.exit_code() is not None or wait_for_any_exit([self._record["pid"]], timeout)

    def stop(self, timeout: float) -> None:
        self._signal(signal.SIGTERM)
        if not self._wait(timeout):
            self.kill()

    def kill(self) -> None:
        below = descendants(self._record["pid"]) if self.exit_code() is None else []
        self._signal(signal.SIGKILL)
        for pid in below:  # (outside the group: they would outlive the kill for a while)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait(self.spec.stop_timeout)
        deadline = time.monotonic() + self.spec.stop_timeout
        for pid in below:
            wait_for_any_exit([pid], max(0.0, deadline - time.monotonic()))

    def remove(self) -> None:
        try:
            self.stop(self.spec.stop_timeout)
        finally:
            _forget(self._record, self._record_path)
            if self._reservation is not None:
                self._reservation.release()

    def keep(self) -> None:
        self._record["kept"] = True
        write_record(self._record_path, self._record)


def _forget(record: ProcessRecord, record_path: Path) -> None:
    """Remove what a process left on disk: its record, its log, its workdir."""
    record_path.unlink(missing_ok=True)
    log = Path(record["log"])
    if log.parent == record_path.parent.parent / "logs":  # only our own logs directory
        log.unlink(missing_ok=True)
    workdir = _own_workdir(record["workdir"])
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class ProcessBackend:
    name = "process"
    needs = "a command"
    host_network = True

    def __init__(self, state: StateDir, ports: range | None = None) -> None:
        self._state = state
        self._ports = ports

    def supports(self, spec: ServiceSpec) -> bool:
        return spec.command is not None

    def identity(self, spec: ServiceSpec) -> str:
        # The code a `{python}` command runs is whatever this import path holds.
        return os.pathsep.join([sys.executable, *sys.path])

    def pinned(self, spec: ServiceSpec) -> None:
        # Its code is on this process's import path, which Pants removes with the test's sandbox.
        return None

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> ProcessInstance:
        assert spec.command is not None
        reservation = reserve_port(self._state, self._ports)
        port = reservation.port
        stem = f"{placement.run_id}-{spec.name}-{port}"
        workdir = None
        if any("{workdir}" in arg for arg in spec.command):
            workdir = tempfile.mkdtemp(prefix=f"{_PREFIX}{stem}-")
        record: ProcessRecord = {
            "run": placement.run_id,
            "service": spec.name,
            "owner": str(placement.owner),
            "owner_pid": placement.owner.pid,
            "owner_start_time": placement.owner.start,
            "pid": 0,
            "start_time": None,
            "port": port,
            "log": str(self._state.sub("logs") / f"{stem}.log"),
            "workdir": workdir,
            "kept": False,
        }
        instance = ProcessInstance(spec, record, self._state.sub("processes") / f"{stem}.json")
        instance._placement, instance._env, instance._reservation = placement, env, reservation
        try:
            instance.start()
        except BaseException:
            _forget(record, instance._record_path)
            reservation.release()
            raise
        return instance

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> ProcessInstance:
        fields = cast(ProcessRecord, {key: value for key, value in record.items() if key != "record_path"})
        instance = ProcessInstance(spec, fields, Path(record["record_path"]))
        child = _CHILDREN.get(fields["pid"])
        if child is not None and process_start_time(child.pid) in (fields["start_time"], None):
            instance._proc = child  # (None: it has exited, and is ours to reap)
        if instance.exit_code() is not None:
            raise ServiceError("its process is gone", service=spec.name)
        return instance

    def create_network(self, purpose: str, placement: Placement) -> None:
        return None  # local processes all share the loopback interface

    def remove_network(self, network: str) -> None:
        pass

    def resources(self, run: str | None = None) -> list[Resource]:
        found = []
        for path in self._state.sub("processes").glob("*.json"):
            record = read_record(path)
            if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
                continue  # being written, removed, or damaged: never acted upon
            if run and record.get("run") != run:
                continue
            with contextlib.suppress(OSError):
                found.append(
                    Resource(
                        backend=self.name,
                        kind="process",
                        id=str(record["pid"]),
                        name=str(record.get("service", "?")),
                        run=str(record.get("run", "?")),
                        owner=Owner.parse(str(record.get("owner", ""))),
                        created=path.stat().st_mtime,
                        kept=bool(record.get("kept")),
                        detail={"record": record, "path": path},
                    )
                )
        return found

    def remove(self, resource: Resource) -> bool:
        record, path = resource.detail["record"], resource.detail["path"]
        # Only the process we started: a reused pid has another start time.
        _signal_group(record["pid"], record.get("start_time"), signal.SIGKILL)
        _forget(record, path)
        return True

    def close(self) -> None:
        pass
