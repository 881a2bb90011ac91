"""Start-to-ready of the stateful services: PostgreSQL and Redis, as containers and as local processes.

Run after `./pants package docker/postgres:image docker/redis:image`:

    ./pants run bench/stateful.py -- --runs 10

"Ready" is what a test needs, never a TCP accept: `SELECT 1` as the configured user in the
configured database, or PING answered by PONG. Each is polled every 5 ms from the host; the clock
starts before the container is created or the process spawned. Rows run interleaved, run by run:
- postgres image, cluster baked at build time (the image's normal start: env applied in single-user
  mode), in the container's layer and copied into a tmpfs PGDATA;
- the same image made to run initdb at start (POSTGRES_INITDB_ARGS set), in the layer and on a tmpfs;
- the baked image again, until Docker's HEALTHCHECK reports healthy (what `docker compose` waits for);
- redis image;
- the local launcher (python -m testinfra._pglocal, and the same file run by path) and redis-server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import docker
import psycopg
import redis

import testinfra._pglocal
from bench._common import median
from bench._common import p90
from bench._common import save
from bench._common import table
from testinfra._pants import resolve_image
from testinfra._ports import reserve_port

POLL = 0.005
DEADLINE = 60.0
LABEL = {"org.labrador.bench": "stateful"}
USER, PASSWORD, DB = "lab", "secret", "dogs"
POSTGRES_ENV = {"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DB}
# Any POSTGRES_INITDB_ARGS makes the image run initdb at start; this one changes nothing else.
INITDB_ENV = {**POSTGRES_ENV, "POSTGRES_INITDB_ARGS": "--no-instructions"}
TMPFS = {"/var/lib/postgresql/data": ""}

Timed = tuple[float, float]  # (start to ready, start to removed)


def postgres_ready(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with psycopg.connect(
            host=host, port=port, user=USER, password=PASSWORD, dbname=DB, connect_timeout=1
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def redis_ready(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def poll(ready: Callable[[], bool], alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not ready():
        if not alive():
            raise RuntimeError("the service exited before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError("the service was not ready in time")
        time.sleep(POLL)


def container_run(
    client: docker.DockerClient,
    image: str,
    port: int,
    ready: Callable[[int], bool],
    *,
    until_healthy: bool = False,
    **options: Any,
) -> Timed:
    t0 = time.perf_counter()
    container = client.containers.run(  # type: ignore[call-overload]
        image, detach=True, ports={f"{port}/tcp": ("127.0.0.1", None)}, labels=LABEL, **options
    )
    try:
        container.reload()
        host_port = int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])

        def alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        if until_healthy:

            def healthy() -> bool:
                container.reload()
                return bool(container.attrs["State"]["Health"]["Status"] == "healthy")

            poll(healthy, alive)
        else:
            poll(lambda: ready(host_port), alive)
        ready_after = time.perf_counter() - t0
        if not ready(host_port):
            raise RuntimeError("healthy, but not ready from the host")
        container.stop(timeout=10)
    finally:
        container.remove(force=True)
    return ready_after, time.perf_counter() - t0


def process_run(argv: list[str], ready: Callable[[int], bool], port: int) -> Timed:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: ready(port), lambda: proc.poll() is None)
        ready_after = time.perf_counter() - t0
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    return ready_after, time.perf_counter() - t0


def pglocal_run(launcher: list[str]) -> Timed:
    data_dir = tempfile.mkdtemp(prefix="pg-", dir="/tmp")  # reachable by the postgres user when root
    try:
        with reserve_port() as reservation:
            port = reservation.port
            argv = [*launcher, "--port", str(port), "--data-dir", data_dir, "--user", USER]
            argv += ["--password", PASSWORD, "--db", DB]
            return process_run(argv, postgres_ready, port)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def redis_process_run(server: str) -> Timed:
    with reserve_port() as reservation:
        port = reservation.port
        argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        return process_run(argv, redis_ready, port)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    rows: dict[str, Callable[[], Timed]] = {}
    client = docker.from_env()
    postgres = resolve_image("docker/postgres:image")
    redis_image = resolve_image("docker/redis:image")
    rows["postgres image, cluster baked at build"] = lambda: container_run(
        client, postgres, 5432, postgres_ready, environment=POSTGRES_ENV
    )
    rows["postgres image, baked, copied to a tmpfs"] = lambda: container_run(
        client, postgres, 5432, postgres_ready, environment=POSTGRES_ENV, tmpfs=TMPFS
    )
    rows["postgres image, initdb at start"] = lambda: container_run(
        client, postgres, 5432, postgres_ready, environment=INITDB_ENV
    )
    rows["postgres image, initdb at start, tmpfs"] = lambda: container_run(
        client, postgres, 5432, postgres_ready, environment=INITDB_ENV, tmpfs=TMPFS
    )
    rows["postgres image, baked, until Docker says healthy"] = lambda: container_run(
        client, postgres, 5432, postgres_ready, environment=POSTGRES_ENV, until_healthy=True
    )
    rows["redis image"] = lambda: container_run(client, redis_image, 6379, redis_ready)
    rows["pglocal process (python -m)"] = lambda: pglocal_run([sys.executable, "-m", "testinfra._pglocal"])
    assert testinfra._pglocal.__file__ is not None
    pglocal_file = os.path.abspath(testinfra._pglocal.__file__)
    rows["pglocal process (file)"] = lambda: pglocal_run([sys.executable, pglocal_file])
    server = shutil.which("redis-server")
    if server is not None:
        rows["redis-server process"] = lambda: redis_process_run(server)
    else:
        print("redis-server is not installed: its row is skipped", file=sys.stderr)

    samples: dict[str, list[Timed]] = {name: [] for name in rows}
    try:
        for _ in range(args.runs):
            for name, run in rows.items():
                samples[name].append(run())
    finally:
        client.close()

    out = []
    for name in rows:
        ready = [sample[0] for sample in samples[name]]
        cycle = [sample[1] for sample in samples[name]]
        out.append(
            [
                name,
                *(f"{value * 1000:.0f}" for value in (median(ready), p90(ready), median(cycle), p90(cycle))),
            ]
        )
    print(f"stateful services, {args.runs} runs each, interleaved")
    print(table(["row", "ready median ms", "ready p90 ms", "start-to-removed median ms", "p90 ms"], out))
    save("stateful", {name: samples[name] for name in rows})


if __name__ == "__main__":
    main()
