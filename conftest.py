"""Loads the images of `docker_image_archive` targets that the engine does not have yet.

Such an archive is a cached build output (pants-plugins/): on a machine that took it from
the (remote) cache the image was never built, only its saved tarball sits beside the
docker-info.json that testinfra reads. A test that runs needs the image in the engine, so before
the session starts any service, each archive Pants placed in the sandbox (or `./pants package`
in dist/) whose image is missing is loaded. Tests whose results come from the cache never get
here, and so never load anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import docker
import pytest


def _archives(root: Path) -> list[tuple[str, Path]]:
    found = []
    for info in [*root.glob("*/*.docker-info.json"), *root.glob("dist/*/*.docker-info.json")]:
        data = json.loads(info.read_text())
        if "archive" in data:
            found.append((data["image_id"], info.parent / data["archive"]))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    # xdist workers start after the controller, which has loaded everything already.
    if hasattr(config, "workerinput") or os.environ.get("TESTINFRA_BACKEND") == "process":
        return
    archives = _archives(config.invocation_params.dir)
    if not archives:
        return
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        # No engine: testinfra falls back to processes, or fails with its own clear message.
        return
    try:
        for image_id, archive in archives:
            try:
                client.images.get(image_id)
                continue
            except docker.errors.ImageNotFound:
                pass
            if not archive.is_file():
                raise pytest.UsageError(
                    f"image {image_id} is not in the engine and its archive {archive} is missing"
                )
            with archive.open("rb") as stream:
                client.images.load(stream)
            # A truncated or foreign archive must fail here, not start the wrong image later.
            try:
                client.images.get(image_id)
            except docker.errors.ImageNotFound:
                raise pytest.UsageError(f"loading {archive} did not give image {image_id}") from None
    finally:
        client.close()
