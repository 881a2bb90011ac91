"""Where web_server1 keeps its dogs: the Registry interface, its errors, and the in-memory store.

The routes see only `Registry`; `labrador.web_server1.postgres` has the PostgreSQL store. Both give
the same ids (1, 2, ... never reused), the same order (by id) and raise the same errors.
"""

from __future__ import annotations

import itertools
import threading
from typing import Protocol

from labrador.web_server1.models import Dog
from labrador.web_server1.models import DogIn


class RegistryError(Exception):
    """Base of the errors a store raises; the routes turn each into an HTTP status."""


class DogNotFoundError(RegistryError):
    def __init__(self, dog_id: int) -> None:
        super().__init__(f"no dog with id {dog_id}")
        self.dog_id = dog_id


class RegistryFullError(RegistryError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the registry is full ({limit} dogs)")
        self.limit = limit


class StoreUnavailableError(RegistryError):
    """The store cannot answer now (its database is down or every connection is busy)."""


class Registry(Protocol):
    def add(self, dog: DogIn, limit: int) -> Dog:
        """Store `dog` under a new id, unless `limit` dogs are stored already (RegistryFullError)."""
        ...

    def get(self, dog_id: int) -> Dog: ...

    def list(self) -> list[Dog]:
        """Every dog, by id."""
        ...

    def delete(self, dog_id: int) -> None: ...


class InMemoryRegistry:
    """Thread-safe store that lives as long as its app."""

    def __init__(self) -> None:
        self._dogs: dict[int, Dog] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, dog: DogIn, limit: int) -> Dog:
        with self._lock:
            if len(self._dogs) >= limit:
                raise RegistryFullError(limit)
            created = Dog(id=next(self._ids), **dog.model_dump())
            self._dogs[created.id] = created
            return created

    def get(self, dog_id: int) -> Dog:
        with self._lock:
            if dog_id not in self._dogs:
                raise DogNotFoundError(dog_id)
            return self._dogs[dog_id]

    def list(self) -> list[Dog]:
        with self._lock:
            # Ids only grow, so insertion order is id order.
            return list(self._dogs.values())

    def delete(self, dog_id: int) -> None:
        with self._lock:
            if self._dogs.pop(dog_id, None) is None:
                raise DogNotFoundError(dog_id)
