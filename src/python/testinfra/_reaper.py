"""What removes what testinfra started, and when.

Every container and network carries labels naming its run and owner, and every local process a
record with the same (see each backend's `resources()`). A resource is an orphan when its owner
is certainly dead: same pid namespace and boot as us, and that pid no longer runs with that start
time. Resources kept after a failed test (`--testinfra-keep-on-failure`) are marked on the
resource itself and are never orphans. Removal, in order of when it happens:

1. Teardown: fixtures release their services (Manager.release, Manager.close), on success,
   failure, Ctrl-C and SIGTERM (the plugin turns SIGTERM into an orderly stop).
2. Death of a process of the run (SIGKILL, OOM, a crashed xdist worker): the run's watchdog
   (_watchdog.py) notices within milliseconds and calls `reap_orphans` for that run.
3. End of the run: the process that began it calls `reap_run`: whatever is left of the run,
   kept services aside.
4. Before a process starts its first service: `sweep` removes orphans of every run (a watchdog
   that was itself killed, a machine that lost power), and run and lease directories nobody
   watches. A lease (one instance for the machine's test processes, see _lease) is removed by
   its keeper once unused; its instances are orphans only if the keeper dies.
5. By hand: `python -m testinfra reap`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence

from testinfra._backends import open_all
from testinfra._backends.base import Backend
from testinfra._backends.base import Resource
from testinfra._owner import OwnerSet
from testinfra._settings import Settings
from testinfra._statedir import StateDir
from testinfra._statedir import try_lock

_ORDER = ("process", "container", "network")  # what others depend on goes last
# Seconds a run directory without a watchdog is taken to be starting, whoever its owners are.
_STARTING = 60.0


def list_resources(backends: Sequence[Backend], run: str | None = None) -> list[Resource]:
    return [resource for backend in backends for resource in backend.resources(run)]


def reap(backends: Sequence[Backend], resources: Sequence[Resource]) -> list[Resource]:
    """Remove `resources` (containers before their networks); returns what was removed."""
    by_name = {backend.name: backend for backend in backends}
    removed = []
    for resource in sorted(
        resources, key=lambda r: _ORDER.index(r.kind) if r.kind in _ORDER else len(_ORDER)
    ):
        backend = by_name.get(resource.backend)
        if backend is not None and backend.remove(resource):
            removed.append(resource)
    return removed


def reap_orphans(backends: Sequence[Backend], run: str | None = None) -> list[Resource]:
    return reap(backends, [r for r in list_resources(backends, run) if r.orphaned])


def reap_run(
    settings: Settings, state: StateDir, run: str, backends: Sequence[Backend] = ()
) -> list[Resource]:
    """Remove everything of `run` but what was kept (the run is over), on every backend."""
    opened: list[Backend] = []
    if {backend.name for backend in backends} < {"process", "docker"}:
        # (An xdist controller starts nothing itself, but its workers may have.)
        opened, _ = open_all(settings, state)
        backends = opened
    try:
        return reap(backends, [r for r in list_resources(backends, run) if not r.kept])
    finally:
        for backend in opened:
            backend.close()


def sweep(settings: Settings, state: StateDir, backends: Sequence[Backend]) -> list[Resource]:
    """Remove every orphan the given backends see, and the directories of finished runs and of
    leases whose keeper is gone."""
    removed = reap_orphans(backends)
    for lease in state.sub("leases").iterdir():
        slot_lock = try_lock(lease / "lock")
        if slot_lock is None:
            continue  # someone is starting or attaching to it right now
        try:
            keeper_lock = try_lock(lease / "keeper.lock")
            if keeper_lock is None:
                continue  # its keeper is on duty
            os.close(keeper_lock)
            # No keeper: its instances (if any) were orphans, removed above.
            users = lease / "users"
            if not users.is_dir() or not OwnerSet(users).prune():
                shutil.rmtree(lease, ignore_errors=True)
        finally:
            os.close(slot_lock)
    runs = state.sub("runs")
    for run_dir in runs.iterdir():
        if not (run_dir / "watchdog.log").is_file():
            # Its watchdog never started: the run is still starting (an owner alive, or made a
            # moment ago), or its owners died first; then nothing of it is left but this.
            owners = run_dir / "owners"
            with contextlib.suppress(OSError):
                if time.time() - run_dir.stat().st_mtime > _STARTING and not (
                    owners.is_dir() and OwnerSet(owners).prune()
                ):
                    shutil.rmtree(run_dir, ignore_errors=True)
            continue
        lock = try_lock(run_dir / "watchdog.lock")
        if lock is None:
            continue  # its watchdog is on duty
        try:
            owners = run_dir / "owners"
            if not owners.is_dir() or not OwnerSet(owners).prune():
                shutil.rmtree(run_dir, ignore_errors=True)
        finally:
            os.close(lock)
    return removed


def age(resource: Resource) -> str:
    if resource.created is None:
        return "?"
    return f"{time.time() - resource.created:.0f}s"
