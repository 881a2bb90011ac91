from __future__ import annotations

import json
from pathlib import Path

import pytest

from testinfra import ImageNotFoundError
from testinfra._pants import resolve_image


def write_info(path: Path, image_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "image_id": image_id, "registries": []}))


def test_an_address_resolves_to_the_image_id_pants_put_in_the_sandbox(tmp_path: Path) -> None:
    write_info(tmp_path / "src.python.app" / "image.docker-info.json", "sha256:abc")
    assert resolve_image("src/python/app:image", cwd=tmp_path) == "sha256:abc"
    assert resolve_image("//src/python/app:image", cwd=tmp_path) == "sha256:abc"


def test_outside_pants_the_id_comes_from_dist(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").touch()
    (tmp_path / "src/python/app").mkdir(parents=True)
    write_info(tmp_path / "dist" / "src.python.app" / "image.docker-info.json", "sha256:def")
    assert resolve_image("src/python/app:image", cwd=tmp_path / "src") == "sha256:def"


def test_an_address_never_built_says_how_to_build_it(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").touch()
    (tmp_path / "src/python/app").mkdir(parents=True)
    with pytest.raises(ImageNotFoundError, match=r"./pants package src/python/app:image"):
        resolve_image("src/python/app:image", cwd=tmp_path)


@pytest.mark.parametrize("reference", ["labrador/web_server1:latest", "python:3.11-slim", "sha256:0123"])
def test_other_strings_are_image_references(tmp_path: Path, reference: str) -> None:
    assert resolve_image(reference, cwd=tmp_path) == reference
