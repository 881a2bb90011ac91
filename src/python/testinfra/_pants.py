"""Finding images that Pants built for the tests.

Under `pants test`, a `runtime_package_dependencies` entry on a `docker_image` target places
`<path.with.dots>/<target>.docker-info.json` in the sandbox; after `pants package` the same file
is under `dist/`. Either gives the image id, which (unlike a tag) no concurrent build can move.
Both are looked for from the given roots (pytest's rootdir and invocation directory), then from
the working directory, so pytest may be started from anywhere inside the repo. A
`docker_image_archive` target (pants-plugins/) also names the saved image beside it ("archive"):
a machine that got it from a remote cache has the archive but not the image, which the docker
backend then loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from testinfra._errors import ImageNotFoundError

_ADDRESS = re.compile(r"^(?://)?(?P<path>[\w.-]+(?:/[\w.-]+)*):(?P<target>[\w.-]+)$")


def build_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "pants.toml").is_file():
            return directory
    return None


def _info_path(path: str, target: str) -> Path:
    return Path(path.replace("/", ".")) / f"{target}.docker-info.json"


def _read_info(info: Path) -> tuple[str, Path | None]:
    """The image id a docker-info.json names, and the saved image beside it, if any."""
    try:
        data = json.loads(info.read_text())
        image_id, archive = data["image_id"], data.get("archive")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ImageNotFoundError(f"{info} does not name an image id ({exc}); rebuild the image") from exc
    if not isinstance(image_id, str) or not isinstance(archive, str | None):
        raise ImageNotFoundError(f"{info} does not name an image id; rebuild the image")
    return image_id, info.parent / archive if archive else None


def _search(roots: Sequence[Path]) -> list[Path]:
    ordered: list[Path] = []
    for root in (*roots, Path.cwd()):
        if root not in ordered:
            ordered.append(root)
    return ordered


def resolve_image(image: str, roots: Sequence[Path] = ()) -> str:
    """The image id for a Pants `docker_image` address; any other string is returned as is."""
    return locate_image(image, roots)[0]


def locate_image(image: str, roots: Sequence[Path] = ()) -> tuple[str, Path | None]:
    """The image id for a Pants address (any other string as is), and its saved archive, if any."""
    match = _ADDRESS.match(image)
    if match is None:
        return image, None
    info = _info_path(match["path"], match["target"])
    search = _search(roots)
    for root in search:
        if (root / info).is_file():
            return _read_info(root / info)
    for root in search:
        repo = build_root(root)
        if repo is None or not (repo / match["path"]).is_dir():
            continue
        if (repo / "dist" / info).is_file():
            return _read_info(repo / "dist" / info)
        raise ImageNotFoundError(
            f"no image built for the Pants target {image!r}. Under `pants test`, add it to the test "
            "target's runtime_package_dependencies; outside Pants, build it first: "
            f"./pants package {image.lstrip('/')}"
        )
    # Not a Pants address after all (e.g. "repo/name:tag"), or no Pants repo around us.
    return image, None


def address_hint(image: str, roots: Sequence[Path] = ()) -> str:
    """For an image the engine does not have: what to check if it was meant as a Pants address."""
    if _ADDRESS.match(image) is None:
        return ""
    places = ", ".join(str(root) for root in _search(roots))
    return (
        f" (if {image!r} is a Pants address: no Pants repo with that directory was found from {places}; "
        "run pytest inside the repo)"
    )
