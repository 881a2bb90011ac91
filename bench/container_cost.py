"""What one web_server1 container costs, start to ready to removed, by how it is networked.

Modes, interleaved run by run, each a loop of containers one after another (no testinfra):
- bridge, published: Docker's default network, port 80 published on 127.0.0.1 (a proxy process);
- bridge, by address: the same network, reached at the container's own address (nothing published);
- host network: the host's network namespace, listening on a free port given in its command.
Per container: wall time, busy CPU of the whole machine (/proc/stat), and the engine's share
(dockerd and containerd processes). The app's own start (Python imports) is in every mode alike.

    ./pants package src/python/labrador/web_server1:image bench:container_cost
    dist/bench/container_cost.pex --runs 5 --containers 10
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench._common import median
from bench._common import save
from bench._common import table
from testinfra._pants import build_root
from testinfra._pants import resolve_image

ADDRESS = "src/python/labrador/web_server1:image"
TICK = os.sysconf("SC_CLK_TCK")
ENGINE = ("dockerd", "containerd")  # containerd-shim included


def busy_seconds() -> float:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait


def engine_seconds() -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith(ENGINE):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def healthy(host: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise TimeoutError(f"{host}:{port}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def published(client: docker.DockerClient, image: str) -> None:
    # (None: a port the engine picks; the SDK's stubs do not know that form.)
    ports = {"80/tcp": ("127.0.0.1", None)}
    container = client.containers.run(image, detach=True, ports=ports)  # type: ignore[call-overload]
    try:
        container.reload()
        healthy("127.0.0.1", int(container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]))
    finally:
        container.remove(force=True)


def by_address(client: docker.DockerClient, image: str) -> None:
    container = client.containers.run(image, detach=True)
    try:
        container.reload()
        healthy(container.attrs["NetworkSettings"]["IPAddress"], 80)
    finally:
        container.remove(force=True)


def host_network(client: docker.DockerClient, image: str) -> None:
    port = free_port()
    command = ["--host", "127.0.0.1", "--port", str(port)]
    container = client.containers.run(image, command, detach=True, network_mode="host")
    try:
        healthy("127.0.0.1", port)
    finally:
        container.remove(force=True)


MODES: dict[str, Callable[[docker.DockerClient, str], None]] = {
    "bridge, published": published,
    "bridge, by address": by_address,
    "host network": host_network,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--containers", type=int, default=10, help="containers per mode and run")
    args = parser.parse_args()
    root = build_root(Path.cwd())
    if root is None:
        raise SystemExit("run this from inside the Labrador repo (see the module docstring)")
    image = resolve_image(ADDRESS, [root])
    client = docker.from_env()
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"wall": [], "busy": [], "engine": []} for mode in MODES
    }
    try:
        for start in MODES.values():
            start(client, image)  # warm-up: image layers in the page cache, SDK connections
        for _ in range(args.runs):
            for mode, start in MODES.items():
                t0, b0, e0 = time.perf_counter(), busy_seconds(), engine_seconds()
                for _ in range(args.containers):
                    start(client, image)
                n = args.containers
                samples[mode]["wall"].append((time.perf_counter() - t0) / n)
                samples[mode]["busy"].append((busy_seconds() - b0) / n)
                samples[mode]["engine"].append((engine_seconds() - e0) / n)
    finally:
        client.close()
    rows = [
        [mode, *(f"{median(values[kind]):.3f}" for kind in ("wall", "busy", "engine"))]
        for mode, values in samples.items()
    ]
    print(f"one web_server1 container, start to ready to removed; medians of {args.runs} runs")
    print(table(["", "wall s", "busy CPU s", "engine CPU s"], rows))
    save("container_cost", samples)


if __name__ == "__main__":
    main()
