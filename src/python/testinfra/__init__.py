"""testinfra: real services as pytest fixtures, in containers or as local processes."""

from testinfra._backend import Endpoint
from testinfra._errors import BackendUnavailableError
from testinfra._errors import ImageNotFoundError
from testinfra._errors import PortAllocationError
from testinfra._errors import ServiceError
from testinfra._errors import ServiceNotReadyError
from testinfra._errors import ServiceStartError
from testinfra._errors import SpecError
from testinfra._errors import TestinfraError
from testinfra._fixtures import service_fixture
from testinfra._ports import PortReservation
from testinfra._ports import reserve_port
from testinfra._readiness import HttpCheck
from testinfra._readiness import LogCheck
from testinfra._readiness import ReadinessCheck
from testinfra._readiness import TcpCheck
from testinfra._service import Manager
from testinfra._service import Service
from testinfra._spec import ServiceSpec

__all__ = [
    "BackendUnavailableError",
    "Endpoint",
    "HttpCheck",
    "ImageNotFoundError",
    "LogCheck",
    "Manager",
    "PortAllocationError",
    "PortReservation",
    "ReadinessCheck",
    "Service",
    "ServiceError",
    "ServiceNotReadyError",
    "ServiceSpec",
    "ServiceStartError",
    "SpecError",
    "TcpCheck",
    "TestinfraError",
    "reserve_port",
    "service_fixture",
]
