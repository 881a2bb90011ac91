"""Storage for an instance that several processes use: a shared service or a lease.

A slot is a directory (`runs/<run>/shared/<spec fingerprint>/` for a shared service, one per run;
`leases/<key>/` for a lease, one per machine): `lock` serialises the processes, `users/` holds
the processes using the instance, `service.json` says how to attach to it (written as the graph
starts, so a half-started graph can be removed by the next process) or why its start failed. The
policy (who starts, who attaches, who removes) is the Manager's and the lease keeper's; this
module only stores.
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


class SlotRecord(TypedDict, total=False):
    backend: str
    # The network made for this graph (its backend's id), removed with it.
    network: str | None
    # Each service's instance record, by service name, in start order.
    instances: dict[str, dict[str, Any]]
    # False while the graph is starting (or if its starter died meanwhile).
    complete: bool
    # Why the start failed; every later process of the run fails at once with it (shared only).
    failed: str
    # A lease's keeper (the process that owns its instances) and the run id they are labelled with.
    keeper: str
    run: str
    # A spare (a never-used graph kept for the next run's per-test fixtures): its lease key, and
    # whether a process took it (it is then that process's alone, and removed once it lets go).
    spare_of: str
    used: bool


class Slot:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.users = OwnerSet(private_dir(directory / "users"))
        self._record = directory / "service.json"

    def locked(self) -> AbstractContextManager[None]:
        return locked(self.directory / "lock")

    def read(self) -> SlotRecord | None:
        record = read_record(self._record)
        return cast(SlotRecord, record) if isinstance(record, dict) else None

    def write(self, record: SlotRecord) -> None:
        write_record(self._record, record)

    def clear(self) -> None:
        self._record.unlink(missing_ok=True)
