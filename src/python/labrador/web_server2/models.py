"""What web_server2 answers with."""

from __future__ import annotations

from pydantic import BaseModel


class DogCard(BaseModel):
    id: int
    title: str


class Kennel(BaseModel):
    count: int
    names: list[str]
