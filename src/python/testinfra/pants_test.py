from __future__ import annotations

import json
from pathlib import Path

import pytest

from testinfra import ImageNotFoundError
from testinfra._pants import address_hint
from testinfra._pants import locate_image
from testinfra._pants import resolve_image


def write_info(path: Path, image_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "image_id": image_id, "registries": []}))


def test_an_address_resolves_to_the_image_id_pants_put_in_the_sandbox(tmp_path: Path) -> None:
    write_info(tmp_path / "src.python.app" / "image.docker-info.json", "sha256:abc")
    assert resolve_image("src/python/app:image", [tmp_path]) == "sha256:abc"
    assert resolve_image("//src/python/app:image", [tmp_path]) == "sha256:abc"


def test_outside_pants_the_id_comes_from_dist(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").touch()
    (tmp_path / "src/python/app").mkdir(parents=True)
    write_info(tmp_path / "dist" / "src.python.app" / "image.docker-info.json", "sha256:def")
    assert resolve_image("src/python/app:image", [tmp_path / "src"]) == "sha256:def"


def test_an_address_never_built_says_how_to_build_it(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").touch()
    (tmp_path / "src/python/app").mkdir(parents=True)
    with pytest.raises(ImageNotFoundError, match=r"./pants package src/python/app:image"):
        resolve_image("src/python/app:image", [tmp_path])


@pytest.mark.parametrize("reference", ["labrador/web_server1:latest", "python:3.11-slim", "sha256:0123"])
def test_other_strings_are_image_references(tmp_path: Path, reference: str) -> None:
    assert resolve_image(reference, [tmp_path]) == reference


def test_an_address_resolves_from_the_rootdir_when_pytest_runs_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "src/python/app").mkdir(parents=True)
    (repo / "pants.toml").touch()
    write_info(repo / "dist" / "src.python.app" / "image.docker-info.json", "sha256:f00")
    monkeypatch.chdir(tmp_path)
    assert resolve_image("src/python/app:image", [repo]) == "sha256:f00"


def test_a_missing_image_says_where_a_pants_repo_was_looked_for(tmp_path: Path) -> None:
    assert "no Pants repo with that directory was found from" in address_hint(
        "src/python/app:image", [tmp_path]
    )
    assert address_hint("python@sha256:0123", [tmp_path]) == ""


def test_an_archived_image_names_its_saved_tarball(tmp_path: Path) -> None:
    info = tmp_path / "src.python.app" / "image.docker-info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"version": 1, "image_id": "sha256:a1", "archive": "image.docker-image.tar"}))
    assert locate_image("src/python/app:image", [tmp_path]) == (
        "sha256:a1",
        info.parent / "image.docker-image.tar",
    )
    assert locate_image("python:3.11", [tmp_path]) == ("python:3.11", None)
