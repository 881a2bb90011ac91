"""Settings: every knob of testinfra, validated once, from options, the environment or ini values.

The pytest plugin reads them in `pytest_configure` (option > environment > ini); the command line
and library users without pytest read the environment. Nothing is read at import time.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Literal
from typing import get_args

from testinfra._errors import SpecError

BackendName = Literal["auto", "docker", "process"]
BACKENDS: tuple[BackendName, ...] = get_args(BackendName)

DEFAULT_LABEL = "org.labrador.testinfra"
_LABEL = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_HIGHEST_PORT = 65535
_LOWEST_PORT = 1024
_MAX_POOL_DEPTH = 4


def default_pool_depth() -> int:
    """How many per-test instances start ahead: one per core, at most four."""
    return max(1, min(os.cpu_count() or 1, _MAX_POOL_DEPTH))


def default_state_dir() -> Path:
    # Shared by every testinfra process of this user, deliberately not per process: locks only
    # work if everyone sees the same files.
    return Path(tempfile.gettempdir()) / f"testinfra-{os.getuid()}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How testinfra runs services. See the README's settings table for each one."""

    backend: BackendName = "auto"
    require_docker: bool = False
    keep_on_failure: bool = False
    state_dir: Path = field(default_factory=default_state_dir)
    # None: the ports below the kernel's ephemeral range (see _ports.port_range).
    port_range: range | None = None
    # Prefix of the labels on every container and network; the reaper finds them by it.
    label: str = DEFAULT_LABEL
    # Per-test (function-scoped) instances started ahead of the tests that take them; 0: none.
    pool_depth: int = field(default_factory=default_pool_depth)
    # Seconds a lease stays warm for the next run once its last user is gone (0: a few seconds).
    reuse_ttl: float = 0.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpecError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.require_docker and self.backend == "process":
            raise SpecError("Docker is required but the process backend was chosen; drop one of them")
        # Absolute now: the watchdog runs from `/` and must find the same directory.
        object.__setattr__(self, "state_dir", Path(os.path.abspath(self.state_dir)))
        if type(self.pool_depth) is not int or self.pool_depth < 0:
            raise SpecError(f"pool depth {self.pool_depth!r} must be a whole number, 0 or more")
        if not (
            isinstance(self.reuse_ttl, int | float) and math.isfinite(self.reuse_ttl) and self.reuse_ttl >= 0
        ):
            raise SpecError(f"reuse TTL {self.reuse_ttl!r} must be a finite number of seconds, 0 or more")
        if not _LABEL.fullmatch(self.label):
            raise SpecError(
                f"label prefix {self.label!r} is invalid: use lowercase letters and digits separated by "
                "'.' or '-', e.g. org.example.testinfra"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from TESTINFRA_* environment variables (the defaults where unset)."""
        env = os.environ if environ is None else environ
        return resolve(lambda name: env.get(env_var(name)))


def env_var(name: str) -> str:
    return "TESTINFRA_" + name.upper()


def parse_flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SpecError(f"{env_var(name)}={value!r} is not a yes/no value: use 1 or 0")


def parse_port_range(value: str) -> range:
    try:
        low, high = (int(part) for part in value.split("-"))
    except ValueError:
        raise SpecError(
            f"{env_var('port_range')}={value!r} is not of the form LOW-HIGH, e.g. 20000-29999"
        ) from None
    if not _LOWEST_PORT <= low <= high <= _HIGHEST_PORT:
        raise SpecError(
            f"{env_var('port_range')}={value!r} must lie within {_LOWEST_PORT}-{_HIGHEST_PORT}, LOW <= HIGH"
        )
    return range(low, high + 1)


def _parse_count(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise SpecError(f"{env_var(name)}={value!r} is not a whole number (0 or more)")
    return int(value)


def _parse_seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise SpecError(f"{env_var(name)}={value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise SpecError(f"{env_var(name)}={value!r} must be a finite number of seconds, 0 or more")
    return seconds


def _parse_backend(name: str, value: str) -> BackendName:
    for backend in BACKENDS:
        if value == backend:
            return backend
    raise SpecError(f"{env_var(name)}={value!r} is not one of {', '.join(BACKENDS)}")


# Each setting's parser; a setting a source does not give keeps its default.
PARSERS: dict[str, Callable[[str, str], object]] = {
    "backend": _parse_backend,
    "require_docker": parse_flag,
    "keep_on_failure": parse_flag,
    "state_dir": lambda name, value: Path(value),
    "port_range": lambda name, value: parse_port_range(value),
    "label": lambda name, value: value,
    "pool_depth": _parse_count,
    "reuse_ttl": _parse_seconds,
}


def resolve(lookup: Callable[[str], str | bool | None]) -> Settings:
    """Settings from `lookup(name)`, which returns a raw value or None where nothing was given."""
    values: dict[str, object] = {}
    for name, parse in PARSERS.items():
        raw = lookup(name)
        if isinstance(raw, bool):
            values[name] = raw
        elif raw is not None and raw != "":
            values[name] = parse(name, raw)
    return Settings(**values)  # type: ignore[arg-type]
