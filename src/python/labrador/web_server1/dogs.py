"""The dog registry: web_server1's one resource, kept in memory."""

from __future__ import annotations

import itertools
import threading
from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import HTTPException
from fastapi import Request
from fastapi import status
from pydantic import BaseModel
from pydantic import Field

from labrador.web_server1.settings import Settings
from labrador.web_server1.settings import get_settings


class DogIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    breed: str = Field(default="labrador", min_length=1, max_length=64)
    age: int = Field(ge=0, le=40)


class Dog(DogIn):
    id: int


class Registry:
    """Thread-safe in-memory store; one per app instance."""

    def __init__(self) -> None:
        self._dogs: dict[int, Dog] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, dog: DogIn, limit: int) -> Dog:
        with self._lock:
            if len(self._dogs) >= limit:
                raise HTTPException(status.HTTP_409_CONFLICT, f"the registry is full ({limit} dogs)")
            created = Dog(id=next(self._ids), **dog.model_dump())
            self._dogs[created.id] = created
            return created

    def get(self, dog_id: int) -> Dog:
        with self._lock:
            if dog_id not in self._dogs:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dog with id {dog_id}")
            return self._dogs[dog_id]

    def list(self) -> list[Dog]:
        with self._lock:
            return list(self._dogs.values())

    def delete(self, dog_id: int) -> None:
        with self._lock:
            if self._dogs.pop(dog_id, None) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dog with id {dog_id}")


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter(prefix="/dogs", tags=["dogs"])


@router.post("", response_model=Dog, status_code=status.HTTP_201_CREATED)
def create_dog(dog: DogIn, registry: RegistryDep, settings: SettingsDep) -> Dog:
    return registry.add(dog, settings.max_dogs)


@router.get("", response_model=list[Dog])
def list_dogs(registry: RegistryDep) -> list[Dog]:
    return registry.list()


@router.get("/{dog_id}", response_model=Dog)
def get_dog(dog_id: int, registry: RegistryDep) -> Dog:
    return registry.get(dog_id)


@router.delete("/{dog_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dog(dog_id: int, registry: RegistryDep) -> None:
    registry.delete(dog_id)
