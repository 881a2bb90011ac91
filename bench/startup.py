"""How long from "start the service" to "it answers /health", testinfra against bare loops.

Run after `./pants package src/python/labrador/web_server1:image` (for the docker rows):

    ./pants run bench/startup.py -- --runs 20

Rows, interleaved run by run so drift hits all of them alike:
- testinfra docker: Manager.start(spec) until ready (one Manager, as in a test session);
- bare SDK: docker-py `containers.run` + a 10 ms poll loop on /health, same image;
- testinfra process: Manager.start(spec) with the process backend;
- bare process: Popen of the service on a port + the same poll loop (import and bind time).
Each also reports start-to-teardown (start, ready, stop, removed).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from bench._common import median
from bench._common import p90
from bench._common import save
from bench._common import table
from testinfra import Manager
from testinfra import ServiceSpec
from testinfra import Settings
from testinfra._backends.docker import connect
from testinfra._backends.docker import engine_problem
from testinfra._pants import resolve_image

ADDRESS = "src/python/labrador/web_server1:image"
POLL = 0.01
DEADLINE = 60.0


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def poll_until_healthy(port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while not healthy(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on port {port}")
        time.sleep(POLL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Timed = tuple[float, float]  # (start to ready, start to removed)


def testinfra_run(manager: Manager, spec: ServiceSpec) -> Timed:
    t0 = time.perf_counter()
    service = manager.start(spec)
    ready = time.perf_counter() - t0
    manager.release(service)
    return ready, time.perf_counter() - t0


def bare_sdk_run(image: str) -> Timed:
    client = connect()
    t0 = time.perf_counter()
    container = client.containers.run(image, detach=True, ports={"80/tcp": ("127.0.0.1", None)})  # type: ignore[call-overload]
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        poll_until_healthy(port)
        ready = time.perf_counter() - t0
        container.stop(timeout=10)
    finally:
        container.remove(force=True)
    client.close()
    return ready, time.perf_counter() - t0


def bare_process_run() -> Timed:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labrador.web_server1.main", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until_healthy(port)
        ready = time.perf_counter() - t0
        proc.terminate()
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    return ready, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    command = ("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}")
    rows: dict[str, Callable[[], Timed]] = {}
    managers = []
    process_manager = Manager(Settings(backend="process"))
    managers.append(process_manager)
    process_spec = ServiceSpec(name="web_server1", command=command)
    if engine_problem() is None:
        image = resolve_image(ADDRESS)
        docker_manager = Manager(Settings(backend="docker"))
        managers.append(docker_manager)
        docker_spec = ServiceSpec(name="web_server1", image=image)
        rows["testinfra docker"] = lambda: testinfra_run(docker_manager, docker_spec)
        rows["bare docker SDK loop"] = lambda: bare_sdk_run(image)
    else:
        print("no Docker engine: docker rows skipped", file=sys.stderr)
    rows["testinfra process"] = lambda: testinfra_run(process_manager, process_spec)
    rows["bare process loop"] = bare_process_run

    samples: dict[str, list[Timed]] = {name: [] for name in rows}
    try:
        for _ in range(args.runs):
            for name, run in rows.items():
                samples[name].append(run())
    finally:
        for manager in managers:
            manager.close()

    def stats(name: str, index: int) -> tuple[float, float]:
        values = [sample[index] for sample in samples[name]]
        return median(values), p90(values)

    out = []
    for name in rows:
        (ready_med, ready_p90), (cycle_med, cycle_p90) = stats(name, 0), stats(name, 1)
        out.append(
            [
                name,
                f"{ready_med * 1000:.0f}",
                f"{ready_p90 * 1000:.0f}",
                f"{cycle_med * 1000:.0f}",
                f"{cycle_p90 * 1000:.0f}",
            ]
        )
    headers = ["row", "ready median ms", "ready p90 ms", "start-to-removed median ms", "p90 ms"]
    print(f"web_server1, {args.runs} runs each, interleaved")
    print(table(headers, out))
    for ours, bare in (
        ("testinfra docker", "bare docker SDK loop"),
        ("testinfra process", "bare process loop"),
    ):
        if ours in samples and bare in samples:
            print(f"{ours} / {bare} (ready, medians): {stats(ours, 0)[0] / stats(bare, 0)[0]:.2f}x")
    save("startup", {name: samples[name] for name in rows})


if __name__ == "__main__":
    main()
