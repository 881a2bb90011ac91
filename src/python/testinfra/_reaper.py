"""Finding and removing what testinfra processes left behind.

Every container and network carries the labels of `_state.owner_labels`, and every local process
a record file; a resource whose owner process is gone (pid and start time no longer match) is an
orphan. `sweep()` runs at session start and removes orphans of any earlier run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from testinfra._errors import BackendUnavailableError
from testinfra._process import records_dir
from testinfra._state import LABEL
from testinfra._state import LABEL_OWNER
from testinfra._state import LABEL_OWNER_START
from testinfra._state import LABEL_RUN
from testinfra._state import LABEL_SERVICE
from testinfra._state import is_alive
from testinfra._state import process_start_time


@dataclass(frozen=True)
class Resource:
    kind: str  # "container", "network" or "process"
    id: str
    name: str
    run: str
    owner_pid: int
    owner_start: int | None
    created: float | None = None

    @property
    def orphaned(self) -> bool:
        return not is_alive(self.owner_pid, self.owner_start)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _docker_client() -> Any:
    from testinfra._docker import connect

    try:
        return connect()
    except BackendUnavailableError:
        return None


def _from_labels(kind: str, rid: str, name: str, labels: dict[str, str], created: float | None) -> Resource:
    return Resource(
        kind=kind,
        id=rid,
        name=name,
        run=labels.get(LABEL_RUN, "?"),
        owner_pid=_int_or_none(labels.get(LABEL_OWNER)) or 0,
        owner_start=_int_or_none(labels.get(LABEL_OWNER_START)),
        created=created,
    )


def list_resources(run: str | None = None, client: Any = None) -> list[Resource]:
    """Every testinfra container, network and process on this machine (of one run, if given)."""
    found: list[Resource] = []
    label = f"{LABEL_RUN}={run}" if run else LABEL
    client = client or _docker_client()
    if client is not None:
        for container in client.containers.list(all=True, filters={"label": label}):
            labels = container.labels
            found.append(
                _from_labels(
                    "container", container.short_id, labels.get(LABEL_SERVICE, container.name), labels, None
                )
            )
        for network in client.networks.list(filters={"label": label}):
            found.append(
                _from_labels("network", network.short_id, network.name, network.attrs["Labels"], None)
            )
    for path in records_dir().glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written or removed right now
        if run and record["run"] != run:
            continue
        found.append(
            Resource(
                kind="process",
                id=str(record["pid"]),
                name=record["service"],
                run=record["run"],
                owner_pid=record["owner_pid"],
                owner_start=record["owner_start_time"],
                created=path.stat().st_mtime,
            )
        )
    return found


def _kill_process(resource: Resource) -> None:
    for record_path in records_dir().glob(f"{resource.run}-{resource.owner_pid}-*.json"):
        record = json.loads(record_path.read_text())
        if str(record["pid"]) != resource.id:
            continue
        # Only the process we started: a reused pid has another start time.
        if process_start_time(record["pid"]) == record["start_time"]:
            try:
                os.killpg(record["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        record_path.unlink(missing_ok=True)


def reap(resources: list[Resource], client: Any = None) -> list[Resource]:
    """Remove `resources` (containers before networks); returns what was removed."""
    import_errors: tuple[type[Exception], ...] = ()
    if any(r.kind != "process" for r in resources):
        import docker.errors

        client = client or _docker_client()
        import_errors = (docker.errors.NotFound,)
    removed = []
    for resource in sorted(resources, key=lambda r: ("process", "container", "network").index(r.kind)):
        try:
            if resource.kind == "process":
                _kill_process(resource)
            elif resource.kind == "container":
                client.containers.get(resource.id).remove(force=True)
            elif resource.kind == "network":
                client.networks.get(resource.id).remove()
        except import_errors:
            pass  # already gone
        removed.append(resource)
    return removed


def sweep() -> list[Resource]:
    """Remove every resource whose owner is dead; what live processes own is left alone."""
    client = _docker_client()
    return reap([r for r in list_resources(client=client) if r.orphaned], client=client)


def age(resource: Resource) -> str:
    if resource.created is None:
        return "?"
    return f"{time.time() - resource.created:.0f}s"
