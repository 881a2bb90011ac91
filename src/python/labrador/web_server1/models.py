"""The dog, as clients send it and as the registry returns it."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic import Field


class DogIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    breed: str = Field(default="labrador", min_length=1, max_length=64)
    age: int = Field(ge=0, le=40)


class Dog(DogIn):
    id: int
