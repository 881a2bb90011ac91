from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi import FastAPI
from pydantic import BaseModel

from labrador.web_server1.dogs import Registry
from labrador.web_server1.dogs import router as dogs_router
from labrador.web_server1.settings import Settings
from labrador.web_server1.settings import get_settings


class Health(BaseModel):
    status: str
    service: str


def create_app(settings: Settings | None = None) -> FastAPI:
    # Resolved now, so a bad environment stops the service at start instead of at the first request.
    resolved = settings or get_settings()
    app = FastAPI(title="web_server1")
    app.state.registry = Registry()
    app.dependency_overrides[get_settings] = lambda: resolved
    app.include_router(dogs_router)

    @app.get("/health", response_model=Health)
    def health(settings: Annotated[Settings, Depends(get_settings)]) -> Health:
        return Health(status="ok", service=settings.service_name)

    return app
