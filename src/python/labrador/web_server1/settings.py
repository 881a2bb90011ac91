from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic import field_validator
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict

from labrador.urls import optional_url


class Settings(BaseSettings):
    """web_server1's settings, read from WEB_SERVER1_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="WEB_SERVER1_")

    service_name: str = "web_server1"
    max_dogs: int = Field(default=1000, ge=0)
    # Where the dogs are kept: a PostgreSQL URL (postgresql://user:password@host:5432/db), migrated
    # at start. Unset or empty: in memory, for the life of the process.
    database_url: str | None = None
    # Connections to the database kept open, at most (one per concurrent request).
    database_pool_size: int = Field(default=10, ge=1, le=100)
    # Seconds to wait for the database: to connect at start, and for a free connection per request.
    database_timeout: float = Field(default=5.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        return optional_url(
            value,
            ("postgresql", "postgres"),
            "postgresql://user:password@localhost:5432/dogs",
            "unset it to keep the dogs in memory",
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
