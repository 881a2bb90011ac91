"""The process backend: a service as a child process on a reserved port."""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from testinfra._backend import Endpoint
from testinfra._backend import Placement
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._errors import TestinfraError
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._spec import ServiceSpec
from testinfra._state import is_alive
from testinfra._state import process_start_time
from testinfra._state import state_dir

_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_LISTEN_BACKLOG = 128
_UNKNOWN_EXIT = -1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it if its parent dies,
    # even by SIGKILL, so no service outlives the test process that started it.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def records_dir() -> Path:
    path = state_dir() / "processes"
    path.mkdir(exist_ok=True)
    return path


def detached_logs_dir() -> Path:
    # Logs of services that outlive their starter cannot live in its per-process directory.
    path = state_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path


def _tail(text: str, lines: int | None) -> str:
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until `pid` (not necessarily our child) exits; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


class ProcessInstance:
    """A service process: ours (started here, restartable) or attached to by its record."""

    def __init__(
        self,
        spec: ServiceSpec,
        port: int,
        log_path: Path,
        record_path: Path,
        placement: Placement | None,
        env: dict[str, str] | None,
    ) -> None:
        self._spec = spec
        self._port = port
        self._log_path = log_path
        self._record_path = record_path
        self._placement = placement
        self._env = env
        self._reservation: PortReservation | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._start_time: int | None = None

    @classmethod
    def create(
        cls, spec: ServiceSpec, env: dict[str, str], placement: Placement, logs_dir: Path
    ) -> ProcessInstance:
        if spec.command is None:
            raise SpecError(f"service {spec.name!r} has no command, so it cannot run as a local process")
        reservation = reserve_port()
        port = reservation.port
        log_dir = detached_logs_dir() if placement.detached else logs_dir
        instance = cls(
            spec,
            port,
            log_dir / f"{placement.run_id}-{spec.name}-{port}.log",
            records_dir() / f"{placement.run_id}-{placement.owner.pid}-{port}.json",
            placement,
            env,
        )
        instance._reservation = reservation
        try:
            instance.start()
        except BaseException:
            reservation.release()
            raise
        return instance

    @classmethod
    def attach(cls, spec: ServiceSpec, record: dict[str, Any]) -> ProcessInstance:
        instance = cls(spec, record["port"], Path(record["log"]), Path(record["record"]), None, None)
        instance._pid, instance._start_time = record["pid"], record["start_time"]
        return instance

    @property
    def resource_id(self) -> str:
        return str(self._pid)

    def record(self) -> dict[str, Any]:
        return {
            "pid": self._pid,
            "start_time": self._start_time,
            "port": self._port,
            "log": str(self._log_path),
            "record": str(self._record_path),
        }

    def start(self) -> None:
        if self._placement is None or self._env is None:
            raise TestinfraError(
                f"service {self._spec.name!r} was started by another process (a shared service): "
                "only that run can restart it; use a private scope to restart a service in a test"
            )
        assert self._spec.command is not None
        env = {**os.environ, **self._env}
        if self._spec.command[0] == "{python}":
            # The child runs our interpreter; give it our import path (a Pants sandbox builds it at runtime).
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
        listener = None
        if any("{fd}" in arg for arg in self._spec.command):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((_HOST, self._port))
            listener.listen(_LISTEN_BACKLOG)
        values = {
            "python": sys.executable,
            "host": _HOST,
            "port": str(self._port),
            "fd": str(listener.fileno() if listener else -1),
        }
        argv = [arg.format(**values) for arg in self._spec.command]
        try:
            with open(self._log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(listener.fileno(),) if listener else (),
                    # Its own process group: a Ctrl-C at the terminal reaches pytest, which then
                    # stops services in order, instead of killing them all mid-test.
                    start_new_session=True,
                    preexec_fn=None if self._placement.detached else _die_with_parent,
                )
        except OSError as exc:
            raise ServiceStartError(f"could not run {argv!r}: {exc}", service=self._spec.name) from exc
        finally:
            if listener is not None:
                # The child holds its own copy; ours would keep accepting connections after it dies.
                listener.close()
        self._pid = self._proc.pid
        self._start_time = process_start_time(self._pid)
        owner = self._placement.owner
        record = {
            "run": self._placement.run_id,
            "service": self._spec.name,
            "owner_pid": owner.pid,
            "owner_start_time": owner.start,
            **self.record(),
        }
        self._record_path.write_text(json.dumps(record))

    def endpoint(self) -> Endpoint:
        return Endpoint(_HOST, self._port)

    def peer_endpoint(self) -> Endpoint:
        return self.endpoint()

    def logs(self, tail: int | None = None) -> str:
        try:
            return _tail(self._log_path.read_text(errors="replace"), tail)
        except FileNotFoundError:
            return ""

    def exit_code(self) -> int | None:
        if self._proc is not None:
            return self._proc.poll()
        return None if is_alive(self._pid, self._start_time) else _UNKNOWN_EXIT

    def _signal(self, sig: signal.Signals) -> None:
        if self.exit_code() is None:
            try:
                os.killpg(self._pid, sig)
            except ProcessLookupError:
                pass

    def _wait(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return _wait_for_exit(self._pid, timeout)

    def stop(self, timeout: float) -> None:
        self._signal(signal.SIGTERM)
        if not self._wait(timeout):
            self.kill()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._wait(self._spec.stop_timeout)

    def remove(self) -> None:
        try:
            self.stop(self._spec.stop_timeout)
        finally:
            self._record_path.unlink(missing_ok=True)
            if self._log_path.parent == detached_logs_dir():
                self._log_path.unlink(missing_ok=True)
            if self._reservation is not None:
                self._reservation.release()


class ProcessBackend:
    name = "process"

    def __init__(self, logs_dir: Path) -> None:
        self._logs_dir = logs_dir

    def create(self, spec: ServiceSpec, env: dict[str, str], placement: Placement) -> ProcessInstance:
        return ProcessInstance.create(spec, env, placement, self._logs_dir)

    def attach(self, spec: ServiceSpec, record: dict[str, Any]) -> ProcessInstance:
        return ProcessInstance.attach(spec, record)

    def network(self, placement: Placement, name: str | None = None) -> str | None:
        return None  # local processes all share the loopback interface

    def remove_network(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass
