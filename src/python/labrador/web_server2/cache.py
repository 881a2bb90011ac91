"""The card cache interface, and the cache used when none is configured (see `redis_cache`)."""

from __future__ import annotations

from typing import Protocol

from labrador.web_server2.models import DogCard


class CardCache(Protocol):
    async def get(self, dog_id: int) -> DogCard | None:
        """The cached card, or None on a miss (Redis trouble included)."""
        ...

    async def put(self, card: DogCard) -> None: ...

    async def aclose(self) -> None: ...


class NoCache:
    """No Redis configured: every card comes from web_server1."""

    async def get(self, dog_id: int) -> DogCard | None:
        return None

    async def put(self, card: DogCard) -> None:
        pass

    async def aclose(self) -> None:
        pass
