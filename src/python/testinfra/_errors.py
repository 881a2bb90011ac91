"""Exceptions raised by testinfra.

    TestinfraError                  base of everything testinfra raises
    ├── SpecError                   a ServiceSpec, option or setting is invalid (also a ValueError)
    ├── SharedServiceError          a test tried what a shared service does not allow
    ├── StateDirError               the state directory is unsafe or unusable
    ├── PortAllocationError         no free port could be reserved
    ├── BackendUnavailableError     the chosen backend cannot run (no Docker engine, engine gone)
    ├── ImageNotFoundError          an image reference or Pants address does not resolve
    ├── StateError                  per-test state (a database, a Redis index) could not be given
    │   ├── MigrationError          a migration failed while building a template; names the file
    │   └── StateTimeoutError       none became free before the deadline (all in use, or slow)
    └── ServiceError                a service misbehaved; carries service, exit_code, logs_tail
        ├── ServiceStartError       it could not be started, or exited while starting
        ├── ServiceNotReadyError    it kept running but never passed its readiness check
        ├── ServiceGoneError        its container or process was removed from outside
        └── ResetError              its reset action (ServiceSpec.reset) failed

Lower-level errors (Docker SDK, OSError) are mapped once, where they happen (each backend has
one mapping), with ``raise ... from exc`` so the original traceback stays attached.
"""

from __future__ import annotations


class TestinfraError(Exception):
    """Base class of every error testinfra raises."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


class SpecError(TestinfraError, ValueError):
    """A service description, a testinfra option or a setting is invalid."""


class SharedServiceError(TestinfraError):
    """A shared service (one instance for every worker of a run) was misused."""


class StateDirError(TestinfraError):
    """The state directory is not safe to use (another owner, open permissions) or not writable."""


class PortAllocationError(TestinfraError):
    """No port could be reserved in the configured range."""


class BackendUnavailableError(TestinfraError):
    """The requested backend cannot run services here."""


class ImageNotFoundError(TestinfraError):
    """An image reference or Pants docker_image address does not resolve to an image."""


class StateError(TestinfraError):
    """Isolated per-test state (a database cloned from a template, a Redis index) could not be given."""


class MigrationError(StateError):
    """A migration failed while a template database was built; the message names the file and the
    server's error. Nothing is left of the half-built template."""


class StateTimeoutError(StateError):
    """No per-test state became free before the deadline: every database or index was in use."""


class ServiceError(TestinfraError):
    """A service failed; the message ends with its exit code and last log lines when known."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        exit_code: int | None = None,
        logs_tail: str = "",
    ) -> None:
        self.service = service
        self.exit_code = exit_code
        self.logs_tail = logs_tail
        details = [f"service {service!r}: {message}"]
        if exit_code is not None:
            details.append(f"exit code: {exit_code}")
        if logs_tail:
            details.append("last log lines:\n" + logs_tail)
        super().__init__("\n".join(details))


class ServiceStartError(ServiceError):
    """The service could not be started, or exited before it was ready."""


class ServiceNotReadyError(ServiceError):
    """The service kept running but did not pass its readiness check in time."""


class ServiceGoneError(ServiceError):
    """The service's container or process was removed by someone else."""


class ResetError(ServiceError):
    """The service's reset action (ServiceSpec.reset) failed: its state may be a previous test's."""


# Tracebacks and reprs name the public path (testinfra.ServiceStartError), not the private module.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, TestinfraError):
        _cls.__module__ = "testinfra"
