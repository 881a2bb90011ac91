"""Starting child processes: their environment, tying their life to ours, or cutting it loose.

A child that must die with us gets the kernel's parent-death signal. The kernel sends it when the
*thread* that forked the child ends, not the process, so such children are forked by one spawner
thread that lives as long as the process (a service started from a short-lived thread, such as a
background pool filler, would otherwise be killed when that thread ends).

A helper that must outlive us (the run's watchdog, a lease's keeper) is a fork of this process
that detaches for good (`fork_detached`): no new interpreter, so nothing to import (no time, and no
files: a Pants sandbox holding these sources may be gone by the time it needs them).
"""

from __future__ import annotations

import ctypes
import gc
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO
from typing import Any
from typing import NoReturn

_PR_SET_PDEATHSIG = 1
_MAX_FD = 65536


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment plus our import path, so a `{python}` child imports what we import.

    (A Pants sandbox builds sys.path at runtime; PYTHONPATH alone would miss it.)
    """
    path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def _die_with_parent(parent: int) -> Callable[[], None]:
    def set_signal() -> None:
        # Runs in the child between fork and exec.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before the signal was armed

    return set_signal


class _Spawner:
    """One long-lived thread that forks every child meant to die with this process."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._pid = os.getpid()
        threading.Thread(target=self._serve, name="testinfra-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)

    def run(self, job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((job, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _get_spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner._pid != os.getpid():  # a forked child needs its own thread
            _spawner = _Spawner()
        return _spawner


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdout: IO[bytes] | int | None,
    die_with_parent: bool,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (a Ctrl-C at the terminal reaches only pytest, which then
    stops services in order); with `die_with_parent`, the kernel kills it if we die."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=dict(env),
            pass_fds=tuple(pass_fds),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()) if die_with_parent else None,
        )

    return _get_spawner().run(start) if die_with_parent else start()


def fork_detached(main: Callable[[Callable[[str], None]], None], log: Path) -> str:
    """Run `main` in a detached fork of this process, its output to `log`; returns the first line
    `main` reports through the callable it is given (or "" if it ended without one).

    The fork leaves this process's session (Ctrl-C does not reach it) and is not our child (no
    zombie, no SIGCHLD for pytest); it closes everything it inherited, and runs only `main`.
    """
    from testinfra._statedir import open_private

    log_fd = open_private(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    answer_read, answer_write = os.pipe()
    with warnings.catch_warnings():
        # (Python 3.12 warns of fork in a process with threads: the child runs only `main`, on
        # objects of its own.)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        _detach(main, log_fd, answer_write)
    os.close(log_fd)
    os.close(answer_write)
    os.waitpid(pid, 0)  # the intermediate child exits at once
    with os.fdopen(answer_read, "rb") as answer:
        return answer.readline().decode().strip()


def _detach(main: Callable[[Callable[[str], None]], None], log: int, answer: int) -> NoReturn:
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        gc.freeze()  # the test process's objects are not ours to finalise
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Nothing of the test process stays open here but the answer pipe.
        os.closerange(3, answer)
        os.closerange(answer + 1, _MAX_FD)
        # Fresh objects: another thread may have held the old ones' locks at the fork.
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir("/")

        def report(line: str) -> None:
            os.write(answer, f"{line}\n".encode())
            os.close(answer)

        main(report)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)
