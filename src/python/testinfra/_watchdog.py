"""One watchdog per run: when a process of the run dies, remove what it left.

Fixture teardown covers normal exits, Ctrl-C and SIGTERM. This covers the rest (SIGKILL, the OOM
killer, a crashed xdist worker): each process of a run adds itself to the run's owner set
(`runs/<run>/owners/`), and the first one starts this watchdog, detached, in its own session. It
waits on the owners' pidfds, so it learns of a death at once, removes every resource whose owner
is dead, and exits once no owner is left and the run's resources are confirmed gone. It needs no
image and no privileges. When the engine does not answer, it retries with backoff instead of
giving up, and keeps the run directory until the engine confirms the removal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable

# The watchdog is a fork of the test process and must import nothing more (its sources may be
# gone by then): what it needs is imported here.
import testinfra._backends.docker
import testinfra._backends.process  # noqa: F401
from testinfra._backends import KINDS
from testinfra._backends import BackendKind
from testinfra._backends import open_all
from testinfra._child import fork_detached
from testinfra._errors import StateDirError
from testinfra._errors import TestinfraError
from testinfra._owner import Owner
from testinfra._owner import OwnerSet
from testinfra._owner import wait_for_any_exit
from testinfra._reaper import list_resources
from testinfra._reaper import reap
from testinfra._settings import Settings
from testinfra._statedir import StateDir
from testinfra._statedir import touch
from testinfra._statedir import try_lock

# How often the owner set is re-read, for owners that register after the watchdog started.
_RESCAN = 0.25
# After the last owner died: how long to keep looking for a create that was still in flight.
_SETTLE = 2.0
# Backoff while the engine does not answer; the watchdog gives up after _GIVE_UP seconds.
_FIRST_RETRY = 0.5
_MAX_RETRY = 10.0
_GIVE_UP = 600.0


def ensure_watchdog(settings: Settings, state: StateDir, run_id: str) -> None:
    """Start the run's watchdog (a detached fork) unless one is running. Call after joining the
    run's owner set. Returns once it is on duty."""
    run_dir = state.run_dir(run_id)
    fd = try_lock(run_dir / "watchdog.lock")
    if fd is None:
        return
    os.close(fd)  # the watchdog takes the lock itself; if two start, one exits at once
    if fork_detached(lambda report: watch(settings, run_id, report), run_dir / "watchdog.log") != "ready":
        warnings.warn(
            f"testinfra: the watchdog of run {run_id} did not start; see {run_dir / 'watchdog.log'}",
            stacklevel=2,
        )


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class _Watch:
    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings = settings
        self.state = StateDir(settings.state_dir)
        self.run_id = run_id
        # Every owner ever seen: if the run directory is deleted under us, we still know whom to watch.
        self.known: set[Owner] = set()
        # The backends the run uses (marked before its first resource), likewise remembered. Only
        # those are opened: this fork must import nothing (another thread of the test process may
        # have been importing the Docker SDK when it forked, and its lock would never be released).
        self.kinds: list[BackendKind] = []

    def owners(self) -> OwnerSet:
        # Recreated if someone deleted it: the watch goes on with the owners already known.
        return OwnerSet(self.state.sub("runs", self.run_id, "owners"))

    def refresh(self) -> None:
        self._refresh_kinds()
        try:
            self.known.update(self.owners().members())
        except (OSError, StateDirError) as exc:
            _log(f"cannot read the owners of run {self.run_id} ({exc}); watching the {len(self.known)} known")

    def _refresh_kinds(self) -> None:
        for kind in KINDS:
            if kind not in self.kinds and uses_backend(self.state, self.run_id, kind):
                self.kinds.append(kind)

    def forget(self, owner: Owner) -> None:
        self.known.discard(owner)
        with contextlib.suppress(OSError, StateDirError):
            self.owners().discard(owner)

    def reap(self, *, everything: bool) -> bool:
        """Remove the run's orphans (or all but kept resources); False if the engine did not answer."""
        self._refresh_kinds()
        backends, problems = open_all(self.settings, self.state, self.kinds)
        try:
            resources = list_resources(backends, self.run_id)
            reap(backends, [r for r in resources if not r.kept and (everything or r.orphaned)])
        except TestinfraError as exc:
            _log(f"reaping run {self.run_id} failed: {exc}")
            return False
        finally:
            for backend in backends:
                backend.close()
        if "docker" in problems and uses_backend(self.state, self.run_id, "docker"):
            _log(f"run {self.run_id} ran containers, and the engine does not answer: {problems['docker']}")
            return False
        return True

    def reap_until_confirmed(self, *, everything: bool) -> None:
        delay, deadline = _FIRST_RETRY, time.monotonic() + _GIVE_UP
        while not self.reap(everything=everything):
            if time.monotonic() > deadline:
                _log(f"giving up on run {self.run_id}: the engine did not answer for {_GIVE_UP:.0f}s")
                return
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY)

    def settle(self) -> None:
        """A create still in flight when its owner died lands after the first reap: look again."""
        deadline = time.monotonic() + _SETTLE
        while True:
            self.reap_until_confirmed(everything=True)
            if time.monotonic() >= deadline:
                return
            time.sleep(_RESCAN)


def uses_backend(state: StateDir, run_id: str, backend: str) -> bool:
    """Whether a process of the run created resources with `backend` (see mark_backend)."""
    return (state.root / "runs" / run_id / f"uses-{backend}").exists()


def mark_backend(state: StateDir, run_id: str, backend: str) -> None:
    """Note that the run creates resources with `backend`: an engine that then stops answering
    means resources the watchdog must wait to remove, not a machine without an engine."""
    touch(state.run_dir(run_id) / f"uses-{backend}")


def watch(settings: Settings, run_id: str, report: Callable[[str], None]) -> None:
    w = _Watch(settings, run_id)
    lock_path = w.state.run_dir(run_id) / "watchdog.lock"
    fd = try_lock(lock_path)
    report("ready")  # on duty, or another watchdog is
    if fd is None:
        return
    while True:
        w.refresh()
        dead = [owner for owner in w.known if not owner.alive]
        if dead:
            w.reap_until_confirmed(everything=False)
            for owner in dead:
                w.forget(owner)
        if not w.known:
            # Every owner is gone. Release the lock first, then look once more: an owner that
            # registered meanwhile either sees the lock free and starts a watchdog, or is seen here.
            os.close(fd)
            w.refresh()
            if not w.known:
                w.settle()
                shutil.rmtree(w.state.run_dir(run_id), ignore_errors=True)
                return
            fd = try_lock(lock_path)
            if fd is None:
                return
            continue
        wait_for_any_exit([owner.pid for owner in w.known if owner.visible], _RESCAN)
