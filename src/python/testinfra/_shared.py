"""Shared services: one instance for every process (xdist worker) of a run.

State lives in `runs/<run>/shared/<service>/`: `lock` serialises the workers, `users/` holds one
file per process using the service, `service.json` says how to attach to it. The first user
starts it (owned by the run's owner, so no worker's exit takes it down), the last one removes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from testinfra._errors import TestinfraError
from testinfra._locks import locked
from testinfra._spec import ServiceSpec
from testinfra._spec import start_order
from testinfra._state import Owner
from testinfra._watchdog import run_dir

if TYPE_CHECKING:
    from testinfra._service import Manager
    from testinfra._service import Service


def _dir(manager: Manager, spec: ServiceSpec) -> Path:
    path = run_dir(manager.run_id) / "shared" / spec.name
    (path / "users").mkdir(parents=True, exist_ok=True)
    return path


def _attach(manager: Manager, spec: ServiceSpec, info: dict[str, Any]) -> Service | None:
    try:
        service = manager.attach_graph(spec, info["backend"], info["instances"])
    except TestinfraError:
        return None  # it died (or its engine went away): start a new one
    return service


def acquire(manager: Manager, spec: ServiceSpec) -> Service:
    directory = _dir(manager, spec)
    info_path = directory / "service.json"
    with locked(directory / "lock"):
        (directory / "users" / str(Owner.me())).touch()
        if info_path.exists():
            info = json.loads(info_path.read_text())
            if info["spec"] != repr(spec):
                raise TestinfraError(
                    f"two different shared services are named {spec.name!r} in this run; give each a unique name"
                )
            service = _attach(manager, spec, info)
            if service is not None:
                return service
            _teardown(manager, spec, info)
        service, instances, network = manager.start_graph(spec, shared=True)
        records = {node.name: instance.record() for node, instance in zip(start_order(spec), instances)}
        info = {"spec": repr(spec), "backend": service.backend, "network": network, "instances": records}
        info_path.write_text(json.dumps(info))
        return service


def release(manager: Manager, service: Service) -> None:
    directory = _dir(manager, service.spec)
    info_path = directory / "service.json"
    with locked(directory / "lock"):
        (directory / "users" / str(Owner.me())).unlink(missing_ok=True)
        for user in (directory / "users").iterdir():
            if not Owner.parse(user.name).alive:
                user.unlink(missing_ok=True)  # a worker that died without releasing
        if any((directory / "users").iterdir()) or not info_path.exists():
            return
        _teardown(manager, service.spec, json.loads(info_path.read_text()))
        info_path.unlink()


def _teardown(manager: Manager, spec: ServiceSpec, info: dict[str, Any]) -> None:
    backend = manager.backend_named(info["backend"])
    for node in reversed(start_order(spec)):
        try:
            backend.attach(node, info["instances"][node.name]).remove()
        except TestinfraError:
            continue  # already gone: nothing to remove
    if info["network"]:
        backend.remove_network(info["network"])
