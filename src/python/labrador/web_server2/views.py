"""Views built from web_server1's dog registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Request

from labrador.web_server2.cache import CardCache
from labrador.web_server2.models import DogCard
from labrador.web_server2.models import Kennel
from labrador.web_server2.upstream import Upstream


def get_upstream(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


def get_card_cache(request: Request) -> CardCache:
    cache: CardCache = request.app.state.card_cache
    return cache


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]
CardCacheDep = Annotated[CardCache, Depends(get_card_cache)]

router = APIRouter(tags=["views"])


@router.get("/kennel", response_model=Kennel)
async def kennel(upstream: UpstreamDep) -> Kennel:
    dogs = await upstream.get_json("/dogs")
    names = sorted(dog["name"] for dog in dogs)
    return Kennel(count=len(names), names=names)


@router.get("/dogs/{dog_id}/card", response_model=DogCard)
async def dog_card(dog_id: Annotated[int, Path(ge=1)], upstream: UpstreamDep, cache: CardCacheDep) -> DogCard:
    cached = await cache.get(dog_id)
    if cached is not None:
        return cached  # a hit never reaches web_server1
    dog = await upstream.get_json(f"/dogs/{dog_id}")
    years = "year" if dog["age"] == 1 else "years"
    card = DogCard(id=dog["id"], title=f"{dog['name']} ({dog['breed']}, {dog['age']} {years})")
    await cache.put(card)
    return card
