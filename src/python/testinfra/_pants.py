"""Finding images that Pants built for the tests.

Under `pants test`, a `runtime_package_dependencies` entry on a `docker_image` target places
`<path.with.dots>/<target>.docker-info.json` in the sandbox; after `pants package` the same file
is under `dist/`. Either gives the image id, which (unlike a tag) no concurrent build can move.
"""

from __future__ import annotations

import json
import re
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


def _read_image_id(info: Path) -> str:
    data = json.loads(info.read_text())
    image_id: str = data["image_id"]
    return image_id


def resolve_image(image: str, cwd: Path | None = None) -> str:
    """The image id for a Pants `docker_image` address; any other string is returned as is."""
    match = _ADDRESS.match(image)
    if match is None:
        return image
    cwd = cwd or Path.cwd()
    info = _info_path(match["path"], match["target"])
    if (cwd / info).is_file():
        return _read_image_id(cwd / info)
    root = build_root(cwd)
    if root is None or not (root / match["path"]).is_dir():
        # Not a Pants address after all (e.g. "repo/name:tag").
        return image
    if (root / "dist" / info).is_file():
        return _read_image_id(root / "dist" / info)
    raise ImageNotFoundError(
        f"no image built for the Pants target {image!r}. Under `pants test`, add it to the test target's "
        f"runtime_package_dependencies; outside Pants, build it first: ./pants package {image.lstrip('/')}"
    )
