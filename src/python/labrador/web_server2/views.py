"""Views built from web_server1's dog registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Request
from pydantic import BaseModel

from labrador.web_server2.upstream import Upstream


class DogCard(BaseModel):
    id: int
    title: str


class Kennel(BaseModel):
    count: int
    names: list[str]


def get_upstream(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]

router = APIRouter(tags=["views"])


@router.get("/kennel", response_model=Kennel)
async def kennel(upstream: UpstreamDep) -> Kennel:
    dogs = await upstream.get_json("/dogs")
    names = sorted(dog["name"] for dog in dogs)
    return Kennel(count=len(names), names=names)


@router.get("/dogs/{dog_id}/card", response_model=DogCard)
async def dog_card(dog_id: Annotated[int, Path(ge=1)], upstream: UpstreamDep) -> DogCard:
    dog = await upstream.get_json(f"/dogs/{dog_id}")
    years = "year" if dog["age"] == 1 else "years"
    return DogCard(id=dog["id"], title=f"{dog['name']} ({dog['breed']}, {dog['age']} {years})")
