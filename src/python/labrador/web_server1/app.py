from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends
from fastapi import FastAPI
from pydantic import BaseModel

from labrador.web_server1.dogs import router as dogs_router
from labrador.web_server1.registry import InMemoryRegistry
from labrador.web_server1.settings import Settings
from labrador.web_server1.settings import get_settings


class Health(BaseModel):
    status: str
    service: str


def create_app(settings: Settings | None = None) -> FastAPI:
    # Resolved now, so a bad environment stops the service at start instead of at the first request.
    resolved = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resolved.database_url is None:
            yield
            return
        # Imported only here: the in-memory service does not load the database driver.
        from labrador.web_server1.postgres import open_registry

        # Connecting and migrating block: off the event loop. A failure here stops the start.
        registry = await asyncio.to_thread(open_registry, resolved)
        app.state.registry = registry
        try:
            yield
        finally:
            registry.close()

    app = FastAPI(title="web_server1", lifespan=lifespan)
    if resolved.database_url is None:
        app.state.registry = InMemoryRegistry()
    app.dependency_overrides[get_settings] = lambda: resolved
    app.include_router(dogs_router)

    @app.get("/health", response_model=Health)
    def health(settings: Annotated[Settings, Depends(get_settings)]) -> Health:
        return Health(status="ok", service=settings.service_name)

    return app
