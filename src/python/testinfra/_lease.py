"""Leases: one instance of a spec for every test process of the machine that asks for it.

Pants runs each test file as a pytest process of its own, so "session" and "shared" scopes start
a service once per file. A lease is keyed by the spec's fingerprint and what it runs (the image
id; the interpreter and import path of a local process), so every process that agrees on both
uses one instance: the first starts it, the others attach. Its instances belong to a keeper, a
detached process per lease (like a run's watchdog) that watches the lease's users and, once none
has been left for an idle grace (a few seconds, so the next test file reuses it; much longer with
`TESTINFRA_REUSE_TTL` for the edit-test loop), removes them and exits. A user's death is seen at
once (pidfds); the keeper's own death leaves orphans that the next sweep removes.

Spares serve function-scoped fixtures in the edit-test loop (only with `TESTINFRA_REUSE_TTL`):
at its end a session leaves as many never-used graphs of a spec as its tests took, for the next
run. Each is a lease of its own (`<key>-<random>`) whose keeper starts the graph itself, after
the session is gone, and keeps it for the TTL. A test process takes one whole (`used`), and the
keeper removes it as soon as that process lets go of it or dies: no spare serves two tests.

    leases/<key>/   lock, users/, service.json (see _shared), keeper.lock, keeper.log
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

from testinfra._backends import open_all
from testinfra._backends.base import Backend
from testinfra._child import fork_detached
from testinfra._errors import TestinfraError
from testinfra._owner import Owner
from testinfra._owner import wait_for_any_exit
from testinfra._reaper import list_resources
from testinfra._reaper import reap
from testinfra._settings import Settings
from testinfra._shared import Slot
from testinfra._shared import SlotRecord
from testinfra._spec import ServiceSpec
from testinfra._statedir import StateDir
from testinfra._statedir import try_lock

# The next test file usually starts within this after the last one using the lease ends.
GRACE = 3.0
_RESCAN = 0.25
_RETRY = 1.0
# Spares left for the next run, per spec: memory, not start time, is what bounds them.
MAX_SPARES = 8


def lease_key(order: Sequence[ServiceSpec], backend: Backend) -> str:
    """Processes with the same key may share one instance of the graph `order`."""
    parts = [backend.name, *(f"{spec.fingerprint}:{backend.identity(spec)}" for spec in order)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def lease_run(key: str) -> str:
    """The run id a lease's resources carry (they belong to no test run)."""
    return f"lease-{key}"


def start_keeper(settings: Settings, state: StateDir, key: str) -> Owner:
    """Start the keeper of lease `key` (call with its slot locked); returns the keeper."""
    directory = state.sub("leases", key)
    grace = settings.reuse_ttl or GRACE
    answer = fork_detached(lambda report: _keep(settings, key, grace, report), directory / "keeper.log")
    keeper = Owner.parse(answer)
    if keeper is None:
        raise TestinfraError(f"the keeper of lease {key} did not start; see {directory / 'keeper.log'}")
    return keeper


def _keep(settings: Settings, key: str, grace: float, report: Callable[[str], None]) -> None:
    state = StateDir(settings.state_dir)
    slot = Slot(state.sub("leases", key))
    me = Owner.me()
    report(str(me))
    # Held until this keeper exits (sweeps see it on duty). The keeper this one replaces (its
    # instance died, or could not be reset) lets go of it once the record names this one.
    while try_lock(slot.directory / "keeper.lock") is None:
        if _replaced(slot, me) or (slot.read() is None and not slot.users.prune()):
            return
        time.sleep(_RESCAN)
    _watch(settings, state, slot, me, lambda record: grace)


def _watch(
    settings: Settings, state: StateDir, slot: Slot, me: Owner, grace: Callable[[SlotRecord], float]
) -> None:
    """Keep the lease in `slot` while it has users, and `grace(record)` seconds after the last."""
    idle_since: float | None = None
    while True:
        if _replaced(slot, me):
            return
        live = slot.users.prune()
        if live:
            idle_since = None
            wait_for_any_exit([owner.pid for owner in live if owner.visible], _RESCAN)
            continue
        record = slot.read()
        if record is None:
            return  # removed by `python -m testinfra reap`, or its start failed: nothing to keep
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since < grace(record):
            time.sleep(_RESCAN)
            continue
        with slot.locked():
            if slot.users.prune():
                continue  # a user came back just in time
            if not _replaced(slot, me):
                remove_lease(settings, state, slot)
        return


def start_spare(
    settings: Settings, state: StateDir, key: str, start: Callable[[Slot, SlotRecord], None]
) -> None:
    """Leave a spare of lease `key` for the next run: a keeper that calls `start(slot, record)`
    (it starts the graph, recording it in the slot with `record`'s fields) and keeps the result."""
    spare = f"{key}-{uuid.uuid4().hex[:8]}"
    directory = state.sub("leases", spare)
    answer = fork_detached(
        lambda report: _keep_spare(settings, spare, key, start, report), directory / "keeper.log"
    )
    if Owner.parse(answer) is None:
        raise TestinfraError(f"the keeper of spare {spare} did not start; see {directory / 'keeper.log'}")


def _keep_spare(
    settings: Settings,
    spare: str,
    key: str,
    start: Callable[[Slot, SlotRecord], None],
    report: Callable[[str], None],
) -> None:
    state = StateDir(settings.state_dir)
    slot = Slot(state.sub("leases", spare))
    me = Owner.me()
    try_lock(slot.directory / "keeper.lock")  # a directory of its own: nobody else holds it
    # Held while the graph starts: a process that would take this spare waits for it.
    with slot.locked():
        report(str(me))
        try:
            start(slot, {"keeper": str(me), "run": lease_run(spare), "spare_of": key})
        except Exception as exc:
            print(f"{time.strftime('%H:%M:%S')} the spare did not start: {exc}", flush=True)
            remove_lease(settings, state, slot)
            return
    # Never used: kept for the TTL. Used: removed as soon as its one user lets go.
    _watch(settings, state, slot, me, lambda record: 0.0 if record.get("used") else settings.reuse_ttl)


def spares(state: StateDir, key: str, made_before: float = math.inf) -> list[Slot]:
    """The spares of lease `key` (made before that time) whose keeper is on duty and that nobody
    took, oldest first."""
    found = []
    for directory in sorted(state.sub("leases").glob(f"{key}-*"), key=_made):
        if _made(directory) >= made_before:
            continue
        slot = Slot(directory)
        record = slot.read()
        if record is not None and (record.get("used") or not keeper_alive(record.get("keeper"))):
            continue
        lock = try_lock(directory / "keeper.lock")
        if lock is not None:  # its keeper is gone (or has not locked yet: it reports after)
            os.close(lock)
            continue
        found.append(slot)
    return found


def _made(directory: Path) -> float:
    # (keeper.lock is made once, by the keeper, and never written.)
    try:
        return (directory / "keeper.lock").stat().st_mtime
    except OSError:
        return math.inf


def _replaced(slot: Slot, me: Owner) -> bool:
    """Whether the lease's record names another keeper (a new instance replaced ours)."""
    record = slot.read()
    return record is not None and record.get("keeper") != str(me)


def remove_lease(settings: Settings, state: StateDir, slot: Slot) -> None:
    """Remove a lease's instances (call with its slot locked), retrying while the engine is away."""
    record = slot.read()
    if record is None:
        return
    run = record.get("run")
    while run:
        backends, _ = open_all(settings, state)
        try:
            reap(backends, list_resources(backends, run))
            break
        except TestinfraError as exc:
            print(f"{time.strftime('%H:%M:%S')} removing lease {run} failed ({exc}); retrying", flush=True)
            time.sleep(_RETRY)
        finally:
            for backend in backends:
                backend.close()
    slot.clear()


def idle_leases(state: StateDir) -> dict[str, Slot]:
    """Leases nobody uses right now (kept warm, or about to go), by the run id of their resources."""
    idle = {}
    leases = state.sub("leases")
    for directory in leases.iterdir():
        if not (directory / "service.json").exists():
            continue
        slot = Slot(directory)
        record = slot.read()
        if record is not None and "run" in record and not slot.users.prune():
            idle[record["run"]] = slot
    return idle


def keeper_alive(keeper: str | None) -> bool:
    owner = Owner.parse(keeper or "")
    return owner is not None and owner.alive
