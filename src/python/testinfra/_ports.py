"""Machine-wide port reservations.

Each port has a lock file in the state directory; holding an exclusive `flock` on it is owning the
port. The kernel drops the lock when the owner exits in any way, SIGKILL included, so no
reservation outlives its process; a release also unlinks the file, so files do not pile up. Ports
come from outside the kernel's ephemeral range, so the kernel never hands them out as the source
port of an outgoing connection, and each one is test-bound before it is returned.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from types import TracebackType

from testinfra._errors import PortAllocationError
from testinfra._settings import Settings
from testinfra._statedir import StateDir
from testinfra._statedir import try_lock

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_HIGHEST = 65535
_MIN_RANGE = 1000


def port_range(configured: range | None = None) -> range:
    """The ports testinfra hands out: `configured`, else the ones below the ephemeral range."""
    if configured is not None:
        return configured
    try:
        eph_low, eph_high = (int(part) for part in _EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        eph_low, eph_high = 32768, 60999
    if eph_low - _LOWEST >= _MIN_RANGE:
        return range(_LOWEST, eph_low)
    return range(eph_high + 1, _HIGHEST + 1)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same flag servers use, so a port in TIME_WAIT counts as free, as it is for them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortReservation:
    """A port no other testinfra user on this machine can get until `release()` or exit."""

    def __init__(self, port: int, lock_fd: int, lock_path: Path) -> None:
        self.port = port
        self._lock_fd: int | None = lock_fd
        self._lock_path = lock_path

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            # Unlinked while still locked: a process waiting on this file sees it is stale.
            self._lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PortReservation(port={self.port}, held={self.held})"


def reserve_port(state: StateDir | None = None, ports: range | None = None) -> PortReservation:
    """Reserve a free TCP port on 127.0.0.1; PortAllocationError when the range is exhausted.

    Without arguments, the state directory and range come from the TESTINFRA_* environment.
    """
    if state is None:
        settings = Settings.from_env()
        state, ports = StateDir(settings.state_dir), ports or settings.port_range
    candidates = port_range(ports)
    directory = state.sub("ports")
    # A random starting point keeps concurrent processes from contending for the same first ports.
    offset = random.randrange(len(candidates))
    for i in range(len(candidates)):
        port = candidates[(offset + i) % len(candidates)]
        path = directory / f"{port}.lock"
        fd = try_lock(path)
        if fd is None:
            continue
        if _bindable(port):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return PortReservation(port, fd, path)
        path.unlink(missing_ok=True)
        os.close(fd)
    raise PortAllocationError(
        f"no free port in {candidates.start}-{candidates.stop - 1}: all are reserved or in use. "
        "Widen TESTINFRA_PORT_RANGE or look for leaked processes with 'python -m testinfra ls'"
    )


def held_port_locks(state: StateDir) -> dict[int, int]:
    """Ports whose lock a live process holds right now, with the pid that reserved each."""
    held = {}
    for path in sorted(state.sub("ports").glob("*.lock")):
        if not path.stem.isdigit():
            continue
        fd = try_lock(path)
        if fd is None:
            try:
                holder = path.read_text().strip()
            except OSError:
                continue
            held[int(path.stem)] = int(holder) if holder.isdigit() else 0
        else:
            path.unlink(missing_ok=True)  # nobody holds it: a stale file, gone now
            os.close(fd)
    return held
