"""The process backend: a service as a child process on a reserved port."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from testinfra._backend import Endpoint
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._ports import reserve_port
from testinfra._spec import ServiceSpec
from testinfra._state import process_start_time
from testinfra._state import state_dir

_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_LISTEN_BACKLOG = 128


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it if its parent dies,
    # even by SIGKILL, so no service outlives the test process that started it.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def records_dir() -> Path:
    path = state_dir() / "processes"
    path.mkdir(exist_ok=True)
    return path


def _tail(text: str, lines: int | None) -> str:
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


class ProcessInstance:
    def __init__(self, spec: ServiceSpec, env: dict[str, str], run_id: str, logs_dir: Path) -> None:
        if spec.command is None:
            raise SpecError(f"service {spec.name!r} has no command, so it cannot run as a local process")
        self._spec = spec
        self._env = env
        self._run_id = run_id
        self._reservation = reserve_port()
        self._log_path = logs_dir / f"{spec.name}-{self._reservation.port}.log"
        self._record = records_dir() / f"{run_id}-{os.getpid()}-{self._reservation.port}.json"
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    def _argv(self, fd: int) -> list[str]:
        assert self._spec.command is not None
        values = {"python": sys.executable, "host": _HOST, "port": str(self._reservation.port), "fd": str(fd)}
        return [arg.format(**values) for arg in self._spec.command]

    def start(self) -> None:
        env = {**os.environ, **self._env}
        assert self._spec.command is not None
        if self._spec.command[0] == "{python}":
            # The child runs our interpreter; give it our import path (a Pants sandbox builds it at runtime).
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        uses_fd = any("{fd}" in arg for arg in self._spec.command)
        listener = None
        if uses_fd:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((_HOST, self._reservation.port))
            listener.listen(_LISTEN_BACKLOG)
        argv = self._argv(listener.fileno() if listener else -1)
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
                    preexec_fn=_die_with_parent,
                )
        except OSError as exc:
            raise ServiceStartError(f"could not run {argv!r}: {exc}", service=self._spec.name) from exc
        finally:
            if listener is not None:
                # The child holds its own copy; ours would keep accepting connections after it dies.
                listener.close()
        self._record.write_text(
            json.dumps(
                {
                    "run": self._run_id,
                    "service": self._spec.name,
                    "pid": self._proc.pid,
                    "start_time": process_start_time(self._proc.pid),
                    "owner_pid": os.getpid(),
                    "owner_start_time": process_start_time(os.getpid()),
                    "port": self._reservation.port,
                }
            )
        )

    def endpoint(self) -> Endpoint:
        return Endpoint(_HOST, self._reservation.port)

    def peer_endpoint(self) -> Endpoint:
        return self.endpoint()

    def logs(self, tail: int | None = None) -> str:
        try:
            return _tail(self._log_path.read_text(errors="replace"), tail)
        except FileNotFoundError:
            return ""

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float) -> None:
        if self.exit_code() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            assert self._proc is not None
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()

    def remove(self) -> None:
        try:
            self.stop(self._spec.stop_timeout)
        finally:
            self._record.unlink(missing_ok=True)
            self._reservation.release()


class ProcessBackend:
    name = "process"

    def __init__(self, run_id: str, logs_dir: Path) -> None:
        self._run_id = run_id
        self._logs_dir = logs_dir

    def create(self, spec: ServiceSpec, env: dict[str, str], *, networked: bool) -> ProcessInstance:
        return ProcessInstance(spec, env, self._run_id, self._logs_dir)

    def close(self) -> None:
        pass
