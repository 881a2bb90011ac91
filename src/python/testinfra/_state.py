"""Where testinfra keeps machine-wide state, and the identity of this run."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

# Labels on every container and network testinfra creates; the reaper finds them by these.
LABEL = "org.labrador.testinfra"
LABEL_RUN = f"{LABEL}.run"
LABEL_OWNER = f"{LABEL}.owner-pid"
LABEL_OWNER_START = f"{LABEL}.owner-start"
LABEL_SERVICE = f"{LABEL}.service"

RUN_ID_ENV = "TESTINFRA_RUN_ID"
# "<pid>-<start time>" of the process that began the run (the xdist controller); shared services are its.
RUN_OWNER_ENV = "TESTINFRA_RUN_OWNER"


def state_dir() -> Path:
    """Shared by every testinfra process of this user on this machine.

    Deliberately not under a per-process TMPDIR: locks only work if everyone sees the same files.
    """
    configured = os.environ.get("TESTINFRA_STATE_DIR")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / f"testinfra-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def process_start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot), None if it is not running.

    A pid alone can be reused; pid plus start time names one process for good. A zombie (dead,
    not yet reaped by its new parent) counts as not running.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces, so split after its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(pid: int, start_time: int | None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


@dataclass(frozen=True)
class Owner:
    """The process a resource belongs to; when it is gone, so is the resource."""

    pid: int
    start: int | None

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        return cls(pid, process_start_time(pid))

    @classmethod
    def parse(cls, text: str) -> Owner:
        pid, _, start = text.partition("-")
        return cls(int(pid), int(start) if start.isdigit() else None)

    def __str__(self) -> str:
        return f"{self.pid}-{self.start}"

    @property
    def alive(self) -> bool:
        return is_alive(self.pid, self.start)


def owner_labels(run_id: str, owner: Owner) -> dict[str, str]:
    return {
        LABEL: "1",
        LABEL_RUN: run_id,
        LABEL_OWNER: str(owner.pid),
        LABEL_OWNER_START: str(owner.start),
    }
