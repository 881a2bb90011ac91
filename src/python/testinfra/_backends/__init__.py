"""The backends that run services: `docker` (containers) and `process` (local processes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from testinfra._backends.base import Backend
from testinfra._errors import BackendUnavailableError
from testinfra._settings import Settings
from testinfra._statedir import StateDir

BackendKind = Literal["docker", "process"]
KINDS: tuple[BackendKind, ...] = ("process", "docker")


def open_backend(
    kind: BackendKind, settings: Settings, state: StateDir, image_roots: Sequence[Path] = ()
) -> Backend:
    """Connect to a backend; BackendUnavailableError when it cannot run here (no engine)."""
    # Imported here: process-only users never pay for the Docker SDK.
    if kind == "docker":
        from testinfra._backends.docker import DockerBackend

        return DockerBackend(settings, image_roots)
    from testinfra._backends.process import ProcessBackend

    return ProcessBackend(state, settings.port_range)


def open_all(
    settings: Settings, state: StateDir, kinds: Sequence[BackendKind] = KINDS
) -> tuple[list[Backend], dict[str, str]]:
    """Every backend (of `kinds`) that answers here, and why the others do not (for the reaper
    and the CLI)."""
    opened: list[Backend] = []
    problems: dict[str, str] = {}
    for kind in kinds:
        try:
            opened.append(open_backend(kind, settings, state))
        except BackendUnavailableError as exc:
            problems[kind] = str(exc)
    return opened, problems
