from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends
from fastapi import FastAPI
from pydantic import BaseModel

from labrador.web_server2.cache import CardCache
from labrador.web_server2.cache import NoCache
from labrador.web_server2.settings import Settings
from labrador.web_server2.settings import get_settings
from labrador.web_server2.upstream import Upstream
from labrador.web_server2.views import router as views_router


class Health(BaseModel):
    status: str
    service: str
    upstream_url: str


def card_cache(settings: Settings) -> CardCache:
    if settings.redis_url is None:
        return NoCache()
    # Imported only here: without a cache, web_server2 does not load the Redis client.
    from labrador.web_server2.redis_cache import RedisCardCache

    return RedisCardCache(
        settings.redis_url,
        prefix=settings.redis_prefix,
        ttl=settings.card_ttl,
        timeout=settings.redis_timeout,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    # Resolved now, so a bad environment stops the service at start instead of at the first request.
    resolved = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream = Upstream(resolved.upstream_url, resolved.upstream_timeout)
        app.state.card_cache = card_cache(resolved)
        try:
            yield
        finally:
            await app.state.card_cache.aclose()
            await app.state.upstream.aclose()

    app = FastAPI(title="web_server2", lifespan=lifespan)
    app.dependency_overrides[get_settings] = lambda: resolved
    app.include_router(views_router)

    @app.get("/health", response_model=Health)
    def health(settings: Annotated[Settings, Depends(get_settings)]) -> Health:
        # Healthy means able to serve; web_server1 being down is reported per request (503).
        return Health(status="ok", service=settings.service_name, upstream_url=settings.upstream_url)

    return app
