"""Finding and removing what testinfra processes left behind.

Every container and network carries the labels of `_state.owner_labels`, and every local process
a record file; a resource whose owner process is gone (pid and start time no longer match) is an
orphan, unless it was kept after a failed test (`--testinfra-keep-on-failure`). `sweep()` runs
before a process starts its first service, and the run's watchdog reaps when an owner dies; both
remove orphans only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testinfra._errors import BackendUnavailableError
from testinfra._process import records_dir
from testinfra._state import LABEL
from testinfra._state import LABEL_OWNER
from testinfra._state import LABEL_OWNER_START
from testinfra._state import LABEL_RUN
from testinfra._state import LABEL_SERVICE
from testinfra._state import Owner
from testinfra._state import process_start_time
from testinfra._state import state_dir

_KINDS = ("process", "container", "network")  # removal order: networks last


def _kept_marker(kind: str, rid: str) -> Path:
    path = state_dir() / "kept"
    path.mkdir(exist_ok=True)
    return path / f"{kind}-{rid}"


def mark_kept(kind: str, rid: str) -> None:
    _kept_marker(kind, rid).touch()


@dataclass(frozen=True)
class Resource:
    kind: str  # one of _KINDS
    id: str
    name: str
    run: str
    owner: Owner
    created: float | None = None
    record: Path | None = None

    @property
    def kept(self) -> bool:
        return _kept_marker(self.kind, self.id).exists()

    @property
    def orphaned(self) -> bool:
        return not self.kept and not self.owner.alive


def _owner_from(labels: dict[str, str]) -> Owner:
    start = labels.get(LABEL_OWNER_START, "")
    return Owner(int(labels.get(LABEL_OWNER, "0")), int(start) if start.isdigit() else None)


def docker_client() -> Any:
    from testinfra._docker import connect

    try:
        return connect()
    except BackendUnavailableError:
        return None


def list_resources(run: str | None = None, client: Any = None) -> list[Resource]:
    """Every testinfra container, network and process on this machine (of one run, if given)."""
    found: list[Resource] = []
    label = f"{LABEL_RUN}={run}" if run else LABEL
    client = client or docker_client()
    if client is not None:
        # The low-level list: the SDK's high-level one inspects each container in turn, and fails
        # when a concurrent session removes one in between.
        for container in client.api.containers(all=True, filters={"label": label}):
            labels = container["Labels"] or {}
            found.append(
                Resource(
                    "container",
                    container["Id"][:12],
                    labels.get(LABEL_SERVICE, container["Names"][0].lstrip("/")),
                    labels.get(LABEL_RUN, "?"),
                    _owner_from(labels),
                    float(container["Created"]),
                )
            )
        for network in client.networks.list(filters={"label": label}):
            labels = network.attrs["Labels"]
            found.append(
                Resource(
                    "network", network.short_id, network.name, labels.get(LABEL_RUN, "?"), _owner_from(labels)
                )
            )
    for path in records_dir().glob("*.json"):
        try:
            record = json.loads(path.read_text())
            created = path.stat().st_mtime
        except (OSError, ValueError):
            continue  # being written or removed right now
        if run and record["run"] != run:
            continue
        owner = Owner(record["owner_pid"], record["owner_start_time"])
        found.append(
            Resource("process", str(record["pid"]), record["service"], record["run"], owner, created, path)
        )
    return found


def _kill_process(resource: Resource) -> None:
    assert resource.record is not None
    try:
        record = json.loads(resource.record.read_text())
    except (OSError, ValueError):
        return  # removed meanwhile by its owner
    # Only the process we started: a reused pid has another start time.
    if process_start_time(record["pid"]) == record["start_time"]:
        try:
            os.killpg(record["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    resource.record.unlink(missing_ok=True)
    if record.get("log") and Path(record["log"]).parent == state_dir() / "logs":
        Path(record["log"]).unlink(missing_ok=True)


def reap(resources: list[Resource], client: Any = None) -> list[Resource]:
    """Remove `resources` (containers before their networks); returns what was removed."""
    from testinfra._docker import remove_container
    from testinfra._docker import remove_network_if_unused

    if any(r.kind != "process" for r in resources):
        client = client or docker_client()
    removed = []
    for resource in sorted(resources, key=lambda r: _KINDS.index(r.kind)):
        if resource.kind == "process":
            _kill_process(resource)
        elif resource.kind == "container":
            remove_container(client, resource.id)
        elif not remove_network_if_unused(client, resource.id):
            continue  # a kept container still uses it
        _kept_marker(resource.kind, resource.id).unlink(missing_ok=True)
        removed.append(resource)
    return removed


def sweep() -> list[Resource]:
    """Remove every orphan; what live processes own, and what was kept, is left alone."""
    client = docker_client()
    return reap([r for r in list_resources(client=client) if r.orphaned], client=client)


def age(resource: Resource) -> str:
    if resource.created is None:
        return "?"
    return f"{time.time() - resource.created:.0f}s"
