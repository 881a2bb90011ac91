"""Who owns a resource, whether that owner still lives, and sets of owners kept on disk.

A pid alone can be reused, and a pid means nothing in another pid namespace or after a reboot. An
owner is therefore (pid, kernel start time, pid namespace, boot id). Containers are engine-wide,
so a run inside a container with the engine's socket mounted sees other runs' containers: an
owner whose namespace or boot we cannot see is never judged dead, and its resources are never
swept by us (only by its own run, or by an explicit `reap --run`).
"""

from __future__ import annotations

import functools
import os
import select
from dataclasses import dataclass
from pathlib import Path

from testinfra._statedir import touch

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def process_start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot); None if it is not running (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces, so split after its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, including children that started a session of their own (as
    PostgreSQL's backends do), which a signal to the process group misses."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found


def process_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


@functools.cache
def _namespace() -> tuple[int, str]:
    """(pid namespace inode, boot id) of this process; neither changes over its life."""
    try:
        boot = _BOOT_ID.read_text().strip().replace("-", "")[:12]
    except OSError:
        boot = "unknown"
    return os.stat("/proc/self/ns/pid").st_ino, boot


@dataclass(frozen=True)
class Owner:
    """The process a resource belongs to; when it is gone, so is the resource."""

    pid: int
    start: int
    pidns: int
    boot: str

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        return cls(pid, process_start_time(pid) or 0, *_namespace())

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner `str(owner)` wrote; None for anything else (never trust a label or a name)."""
        parts = text.split("-")
        if len(parts) != 4 or not all(part.isdigit() for part in parts[:3]) or not parts[3].isalnum():
            return None
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])

    def __str__(self) -> str:
        return f"{self.pid}-{self.start}-{self.pidns}-{self.boot}"

    @property
    def visible(self) -> bool:
        """Whether this process can tell if the owner lives (same pid namespace, same boot)."""
        return (self.pidns, self.boot) == _namespace()

    @property
    def alive(self) -> bool:
        """False only when the owner is certainly gone; an owner we cannot see counts as alive."""
        return not self.visible or process_start_time(self.pid) == self.start


def wait_for_any_exit(pids: list[int], timeout: float) -> bool:
    """Wait until one of `pids` (our children or not) exits; False on timeout."""
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                return True
        return bool(select.select(fds, [], [], timeout)[0])
    finally:
        for fd in fds:
            os.close(fd)


class OwnerSet:
    """Owners recorded as files in a private directory: the users of a run or of a shared service."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, owner: Owner) -> None:
        touch(self.directory / str(owner))

    def discard(self, owner: Owner) -> None:
        (self.directory / str(owner)).unlink(missing_ok=True)

    def members(self) -> list[Owner]:
        found = []
        for path in self.directory.iterdir():
            owner = Owner.parse(path.name)
            if owner is not None:
                found.append(owner)
        return found

    def prune(self) -> list[Owner]:
        """Forget the owners that died; returns the live ones."""
        live = []
        for owner in self.members():
            if owner.alive:
                live.append(owner)
            else:
                self.discard(owner)
        return live
