"""Storage for a shared service: one instance for every process (xdist worker) of a run.

A slot is a directory, `runs/<run>/shared/<spec fingerprint>/`: `lock` serialises the processes,
`users/` holds the processes using the service, `service.json` says how to attach to it (written
as the graph starts, so a half-started graph can be removed by the next process) or why its start
failed. The policy (who starts, who attaches, who removes) is the Manager's; this module only
stores.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from typing import TypedDict
from typing import cast

from testinfra._owner import OwnerSet
from testinfra._statedir import locked
from testinfra._statedir import private_dir
from testinfra._statedir import read_record
from testinfra._statedir import write_record


class SharedRecord(TypedDict, total=False):
    backend: str
    # The network made for this graph (its backend's id), removed with it.
    network: str | None
    # Each service's instance record, by service name, in start order.
    instances: dict[str, dict[str, Any]]
    # False while the graph is starting (or if its starter died meanwhile).
    complete: bool
    # Why the start failed; every later process fails at once with it.
    failed: str


class SharedSlot:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.users = OwnerSet(private_dir(directory / "users"))
        self._record = directory / "service.json"

    def locked(self) -> AbstractContextManager[None]:
        return locked(self.directory / "lock")

    def read(self) -> SharedRecord | None:
        record = read_record(self._record)
        return cast(SharedRecord, record) if isinstance(record, dict) else None

    def write(self, record: SharedRecord) -> None:
        write_record(self._record, record)

    def clear(self) -> None:
        self._record.unlink(missing_ok=True)
