"""One watchdog per run: when every process of the run has died, remove what they left.

Fixture teardown covers normal exits, Ctrl-C and SIGTERM. This covers the rest (SIGKILL, the
OOM killer, a crashed xdist worker): each process of a run registers itself as an owner in
`runs/<run>/owners/`, and the first one starts this watchdog, detached, in its own session. It
waits on the owners' pidfds, so it learns of a death at once, removes every resource whose owner
is dead, and exits once no owner is left. It needs no image and no privileges.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from testinfra._locks import try_lock
from testinfra._state import Owner
from testinfra._state import state_dir

# How often the owner list is re-read, for owners that register after the watchdog started.
_RESCAN = 0.25


def run_dir(run_id: str) -> Path:
    return state_dir() / "runs" / run_id


def register_owner(run_id: str) -> Path:
    owners = run_dir(run_id) / "owners"
    owners.mkdir(parents=True, exist_ok=True)
    path = owners / str(Owner.me())
    path.touch()
    return path


def _lock(run_id: str) -> int | None:
    """The run's watchdog lock, or None when another watchdog holds it."""
    return try_lock(run_dir(run_id) / "watchdog.lock")


def ensure_watchdog(run_id: str) -> None:
    """Start the run's watchdog unless one is running. Call after register_owner.

    Returns once the watchdog has imported what it needs: a Pants sandbox holding these sources
    may be deleted as soon as the test process ends.
    """
    fd = _lock(run_id)
    if fd is None:
        return
    os.close(fd)  # the watchdog takes the lock itself; if two start, one exits at once
    with open(run_dir(run_id) / "watchdog.log", "ab") as log:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "testinfra._watchdog", run_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd="/",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)},
            start_new_session=True,  # not in the terminal's process group: Ctrl-C does not reach it
        )
    assert watchdog.stdout is not None
    with watchdog.stdout:
        if watchdog.stdout.readline() != b"ready\n":
            log_text = (run_dir(run_id) / "watchdog.log").read_text(errors="replace")
            warnings.warn(
                f"testinfra: the watchdog of run {run_id} did not start: {log_text[-2000:]}", stacklevel=2
            )


def _owners(run_id: str) -> dict[Path, Owner]:
    return {path: Owner.parse(path.name) for path in (run_dir(run_id) / "owners").glob("*-*")}


def _wait_for_a_death(pids: list[int]) -> None:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            break  # already dead: no need to wait
    try:
        if len(fds) == len(pids):
            select.select(fds, [], [], _RESCAN)
    finally:
        for fd in fds:
            os.close(fd)


def watch(run_id: str) -> None:
    # Everything it will need from testinfra is imported before it says "ready": a Pants sandbox
    # holding these sources is deleted when the test process ends (the Docker SDK lives elsewhere).
    import testinfra._docker  # noqa: F401
    from testinfra._reaper import list_resources
    from testinfra._reaper import reap

    fd = _lock(run_id)
    # Tell the starter we are independent of its files now (or that another watchdog is on duty).
    sys.stdout.write("ready\n")
    sys.stdout.close()
    if fd is None:
        return
    while True:
        owners = _owners(run_id)
        dead = [path for path, owner in owners.items() if not owner.alive]
        if dead:
            reap([r for r in list_resources(run=run_id) if r.orphaned])
            for path in dead:
                path.unlink(missing_ok=True)
        if len(dead) == len(owners):
            # Every owner is gone. Release the lock first, then look once more: an owner that
            # registered meanwhile either sees the lock free and starts a watchdog, or is seen here.
            os.close(fd)
            if not _owners(run_id):
                _remove_run_dir(run_id)
                return
            fd = _lock(run_id)
            if fd is None:
                return
            continue
        _wait_for_a_death([owner.pid for owner in owners.values()])


def _remove_run_dir(run_id: str) -> None:
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


if __name__ == "__main__":
    watch(sys.argv[1])
