from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict


class Settings(BaseSettings):
    """web_server2's settings, read from WEB_SERVER2_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="WEB_SERVER2_")

    service_name: str = "web_server2"
    # Where web_server1 answers, e.g. http://web_server1:80 between containers.
    upstream_url: str = "http://127.0.0.1:8000"
    # Seconds for one call to web_server1, connect included.
    upstream_timeout: float = Field(default=2.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
