from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic import field_validator
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict

from labrador.urls import optional_url

_REDIS_SCHEMES = ("redis", "rediss", "unix")


class Settings(BaseSettings):
    """web_server2's settings, read from WEB_SERVER2_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="WEB_SERVER2_")

    service_name: str = "web_server2"
    # Where web_server1 answers, e.g. http://web_server1:80 between containers.
    upstream_url: str = "http://127.0.0.1:8000"
    # Seconds for one call to web_server1, connect included.
    upstream_timeout: float = Field(default=2.0, gt=0)
    # Redis for caching dog cards (redis://host:6379/0, or unix:///path/redis.sock). Unset or
    # empty: no cache.
    redis_url: str | None = None
    # Prepended to every key, so several services or tests can share one Redis.
    redis_prefix: str = Field(default="web_server2:", max_length=200)
    # Seconds a cached card lives: short, since web_server1 does not tell us about changes.
    card_ttl: float = Field(default=10.0, gt=0)
    # Seconds to wait for Redis before answering without the cache.
    redis_timeout: float = Field(default=0.25, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return optional_url(
            value, _REDIS_SCHEMES, "redis://localhost:6379/0", "unset it to run without a cache"
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
