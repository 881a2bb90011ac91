"""The dog registry's routes; the store behind them is the app's Registry (in memory or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import HTTPException
from fastapi import Request
from fastapi import status

from labrador.web_server1.models import Dog
from labrador.web_server1.models import DogIn
from labrador.web_server1.registry import DogNotFoundError
from labrador.web_server1.registry import Registry
from labrador.web_server1.registry import RegistryFullError
from labrador.web_server1.registry import StoreUnavailableError
from labrador.web_server1.settings import Settings
from labrador.web_server1.settings import get_settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter(prefix="/dogs", tags=["dogs"])


@contextmanager
def _http_errors() -> Iterator[None]:
    """The store's errors as HTTP statuses, with the store's message as the detail."""
    try:
        yield
    except DogNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except RegistryFullError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except StoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


@router.post("", response_model=Dog, status_code=status.HTTP_201_CREATED)
def create_dog(dog: DogIn, registry: RegistryDep, settings: SettingsDep) -> Dog:
    with _http_errors():
        return registry.add(dog, settings.max_dogs)


@router.get("", response_model=list[Dog])
def list_dogs(registry: RegistryDep) -> list[Dog]:
    with _http_errors():
        return registry.list()


@router.get("/{dog_id}", response_model=Dog)
def get_dog(dog_id: int, registry: RegistryDep) -> Dog:
    with _http_errors():
        return registry.get(dog_id)


@router.delete("/{dog_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dog(dog_id: int, registry: RegistryDep) -> None:
    with _http_errors():
        registry.delete(dog_id)
