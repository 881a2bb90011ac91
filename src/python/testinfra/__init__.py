"""testinfra: real services as pytest fixtures, in containers or as local processes."""

from testinfra._backends.base import Endpoint
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ImageNotFoundError
from testinfra._errors import MigrationError
from testinfra._errors import PortAllocationError
from testinfra._errors import ResetError
from testinfra._errors import ServiceError
from testinfra._errors import ServiceGoneError
from testinfra._errors import ServiceNotReadyError
from testinfra._errors import ServiceStartError
from testinfra._errors import SharedServiceError
from testinfra._errors import SpecError
from testinfra._errors import StateDirError
from testinfra._errors import StateError
from testinfra._errors import StateTimeoutError
from testinfra._errors import TestinfraError
from testinfra._fixtures import Scope
from testinfra._fixtures import service_fixture
from testinfra._isolation import database_fixture
from testinfra._isolation import paired_service_fixture
from testinfra._isolation import redis_fixture
from testinfra._isolation import reset_fixture
from testinfra._manager import Manager
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._postgres import Database
from testinfra._postgres import Migrations
from testinfra._postgres import PostgresCheck
from testinfra._readiness import CommandCheck
from testinfra._readiness import HttpCheck
from testinfra._readiness import LogCheck
from testinfra._readiness import Probed
from testinfra._readiness import ReadinessCheck
from testinfra._readiness import TcpCheck
from testinfra._redis import RedisDatabase
from testinfra._reset import CallableReset
from testinfra._reset import CommandReset
from testinfra._reset import HttpReset
from testinfra._reset import ResetAction
from testinfra._service import Service
from testinfra._settings import BackendName
from testinfra._settings import Settings
from testinfra._spec import ServiceSpec

__version__ = "0.2.0"

__all__ = [
    "BackendName",
    "BackendUnavailableError",
    "CallableReset",
    "CommandCheck",
    "CommandReset",
    "Database",
    "Endpoint",
    "HttpCheck",
    "HttpReset",
    "ImageNotFoundError",
    "LogCheck",
    "Manager",
    "MigrationError",
    "Migrations",
    "PortAllocationError",
    "PortReservation",
    "PostgresCheck",
    "Probed",
    "ReadinessCheck",
    "RedisDatabase",
    "ResetAction",
    "ResetError",
    "Scope",
    "Service",
    "ServiceError",
    "ServiceGoneError",
    "ServiceNotReadyError",
    "ServiceSpec",
    "ServiceStartError",
    "Settings",
    "SharedServiceError",
    "SpecError",
    "StateDirError",
    "StateError",
    "StateTimeoutError",
    "TcpCheck",
    "TestinfraError",
    "__version__",
    "database_fixture",
    "paired_service_fixture",
    "redis_fixture",
    "reserve_port",
    "reset_fixture",
    "service_fixture",
]
