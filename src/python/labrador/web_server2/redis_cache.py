"""A cache of dog cards in Redis, used when WEB_SERVER2_REDIS_URL is set.

The cache only ever saves work: when Redis is down or slow, `get` reports a miss and `put` does
nothing, each with a warning in the log, and the card comes from web_server1 as without a cache.
Cards expire after a short TTL: a dog changed or deleted in web_server1 shows until then.
"""

from __future__ import annotations

import logging

import redis.asyncio
from pydantic import ValidationError
from redis.exceptions import RedisError

from labrador.web_server2.models import DogCard

logger = logging.getLogger(__name__)


class RedisCardCache:
    def __init__(self, url: str, *, prefix: str, ttl: float, timeout: float) -> None:
        # No connection yet: Redis being down at start must not stop web_server2.
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))

    def key(self, dog_id: int) -> str:
        return f"{self._prefix}card:{dog_id}"

    async def get(self, dog_id: int) -> DogCard | None:
        key = self.key(dog_id)
        try:
            raw = await self._redis.get(key)
        except RedisError as exc:
            logger.warning("card cache: cannot read %s, asking web_server1 instead: %r", key, exc)
            return None
        if raw is None:
            return None
        try:
            return DogCard.model_validate_json(raw)
        except ValidationError:
            logger.warning("card cache: %s does not hold a card; asking web_server1 instead", key)
            return None

    async def put(self, card: DogCard) -> None:
        key = self.key(card.id)
        try:
            await self._redis.set(key, card.model_dump_json(), px=self._ttl_ms)
        except RedisError as exc:
            logger.warning("card cache: cannot store %s: %r", key, exc)

    async def aclose(self) -> None:
        await self._redis.aclose()
