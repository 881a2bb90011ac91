"""web_server2's client for web_server1: every failure becomes a clear 502, 503 or 504."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import HTTPException
from fastapi import status


class Upstream:
    def __init__(self, base_url: str, timeout: float) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.base_url = base_url

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, path: str) -> Any:
        try:
            response = await self._client.get(path)
        except httpx.TimeoutException as exc:
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, f"web_server1 at {self.base_url} did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"web_server1 at {self.base_url} is unreachable: {exc!r}"
            ) from exc
        if response.status_code == status.HTTP_404_NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, response.json().get("detail", "not found"))
        if response.is_error:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"web_server1 answered {response.status_code} to GET {path}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"web_server1 sent invalid JSON for GET {path}"
            ) from exc
