"""Machine-wide port reservations.

Each port has a lock file in the shared state directory; holding an exclusive `flock` on it is
owning the port. The kernel drops the lock when the owner exits in any way, SIGKILL included, so
no reservation outlives its process. Ports come from outside the kernel's ephemeral range, so the
kernel never hands them out as the source port of an outgoing connection, and each one is
test-bound before it is returned.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from types import TracebackType

from testinfra._errors import PortAllocationError
from testinfra._errors import SpecError
from testinfra._locks import try_lock
from testinfra._state import state_dir

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_HIGHEST = 65535


def port_range() -> range:
    """The ports testinfra hands out: TESTINFRA_PORT_RANGE ('lo-hi') or below the ephemeral range."""
    configured = os.environ.get("TESTINFRA_PORT_RANGE")
    if configured:
        try:
            low, high = (int(part) for part in configured.split("-"))
        except ValueError:
            raise SpecError(
                f"TESTINFRA_PORT_RANGE={configured!r} is not of the form LOW-HIGH, e.g. 20000-29999"
            )
        if not 1024 <= low <= high <= _HIGHEST:
            raise SpecError(
                f"TESTINFRA_PORT_RANGE={configured!r} must lie within 1024-{_HIGHEST}, LOW <= HIGH"
            )
        return range(low, high + 1)
    try:
        eph_low, eph_high = (int(part) for part in _EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        eph_low, eph_high = 32768, 60999
    if eph_low - _LOWEST >= 1000:
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

    def __init__(self, port: int, lock_fd: int) -> None:
        self.port = port
        self._lock_fd: int | None = lock_fd

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            # Closing the descriptor drops the flock; the file stays so the lock has one inode.
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


def locks_dir() -> Path:
    path = state_dir() / "ports"
    path.mkdir(exist_ok=True)
    return path


def reserve_port() -> PortReservation:
    """Reserve a free TCP port on 127.0.0.1; raises PortAllocationError when the range is exhausted."""
    ports = port_range()
    directory = locks_dir()
    # A random starting point keeps concurrent processes from contending for the same first ports.
    offset = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(offset + i) % len(ports)]
        fd = try_lock(directory / f"{port}.lock")
        if fd is None:
            continue
        if _bindable(port):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return PortReservation(port, fd)
        os.close(fd)
    raise PortAllocationError(
        f"no free port in {ports.start}-{ports.stop - 1}: all are reserved or in use. "
        "Widen TESTINFRA_PORT_RANGE or look for leaked processes with 'python -m testinfra ls'"
    )


def held_port_locks() -> dict[int, int]:
    """Ports whose lock a live process holds right now, with the pid that reserved each."""
    held = {}
    for path in sorted(locks_dir().glob("*.lock")):
        fd = try_lock(path)
        if fd is None:
            holder = path.read_text().strip()
            held[int(path.stem)] = int(holder) if holder.isdigit() else 0
        else:
            os.close(fd)
    return held
