from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict


class Settings(BaseSettings):
    """web_server1's settings, read from WEB_SERVER1_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="WEB_SERVER1_")

    service_name: str = "web_server1"
    max_dogs: int = 1000


@lru_cache
def get_settings() -> Settings:
    return Settings()
