"""Ten tests that each need web_server1: a fresh instance per test, or one for the session.

The same ten tests (GET /health) run under each tool, as a pytest session in a subprocess; the
wall time of the whole session is what a developer waits for. Rows, interleaved run by run:
- bare docker SDK loop: a fixture that runs the container, polls /health, removes it;
- bare docker SDK loop on host network: the same, the container on the host's network at a free port;
- testcontainers-python: DockerContainer with the port exposed (its reaper disabled: the Ryuk
  image cannot be pulled here), the same /health poll;
- testinfra docker: service_fixture at that scope, on the host's network as tests/services runs it;
- testinfra docker on bridge: the same on a network of its own (host_network=False);
- testinfra process: service_fixture at that scope, as a local process;
- bare local process: a fixture that starts uvicorn on a free port and polls /health.
`--baseline DIR` adds the testinfra bridge and process rows again with the testinfra found in DIR
(another checkout's src/python), so a change is measured against the code before it, in the same run.

    ./pants package src/python/labrador/web_server1:image bench:instances
    dist/bench/instances.pex --runs 5 [--baseline /path/to/old/src/python]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench._common import median
from bench._common import save
from bench._common import table
from testinfra._backends.docker import engine_problem
from testinfra._pants import build_root
from testinfra._pants import resolve_image

ADDRESS = "src/python/labrador/web_server1:image"
TESTS = 10

POLL = """
import http.client
import time

def healthy(port):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise TimeoutError(port)
"""

TEST_BODY = f"""
import http.client
import pytest

@pytest.mark.parametrize("n", range({TESTS}))
def test_health(svc, n):
    conn = http.client.HTTPConnection("127.0.0.1", int(svc.rsplit(":", 1)[1]), timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()
"""

FIXTURES = {
    "bare docker SDK loop": POLL
    + """
import docker
import pytest

@pytest.fixture(scope=SCOPE)
def svc():
    client = docker.from_env()
    container = client.containers.run(IMAGE, detach=True, ports={"80/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        container.remove(force=True)
        client.close()
""",
    "bare docker SDK loop on host network": POLL
    + """
import socket
import docker
import pytest

@pytest.fixture(scope=SCOPE)
def svc():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = docker.from_env()
    container = client.containers.run(
        IMAGE, ["--host", "127.0.0.1", "--port", str(port)], detach=True, network_mode="host"
    )
    try:
        healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        container.remove(force=True)
        client.close()
""",
    "testcontainers-python": POLL
    + """
import pytest
from testcontainers.core.container import DockerContainer

@pytest.fixture(scope=SCOPE)
def svc():
    with DockerContainer(IMAGE).with_exposed_ports(80) as container:
        port = int(container.get_exposed_port(80))
        healthy(port)
        yield f"http://127.0.0.1:{port}"
""",
    "testinfra docker": """
from testinfra import ServiceSpec
from testinfra import service_fixture
import pytest

LISTEN = ("--host", "{host}", "--port", "{port}")
web = service_fixture(ServiceSpec(name="web", image=IMAGE, args=LISTEN, host_network=True), scope=SCOPE)

@pytest.fixture
def svc(web):
    return web.url
""",
    "testinfra docker on bridge": """
from testinfra import ServiceSpec
from testinfra import service_fixture
import pytest

web = service_fixture(ServiceSpec(name="web", image=IMAGE), scope=SCOPE)

@pytest.fixture
def svc(web):
    return web.url
""",
    "testinfra process": """
from testinfra import ServiceSpec
from testinfra import service_fixture
import pytest

COMMAND = ("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}")
web = service_fixture(ServiceSpec(name="web", command=COMMAND), scope=SCOPE)

@pytest.fixture
def svc(web):
    return web.url
""",
    "bare local process": POLL
    + """
import socket
import subprocess
import sys
import pytest

@pytest.fixture(scope=SCOPE)
def svc():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "labrador.web_server1.main", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
""",
}
DOCKER_ROWS = (
    "bare docker SDK loop",
    "bare docker SDK loop on host network",
    "testcontainers-python",
    "testinfra docker",
    "testinfra docker on bridge",
)
SCOPES = {"fresh instance per test": "function", "one instance for the session": "session"}


def write_session(directory: Path, row: str, scope: str, image: str) -> None:
    directory.mkdir(parents=True)
    conftest = f"IMAGE = {image!r}\nSCOPE = {scope!r}\n" + textwrap.dedent(FIXTURES[row])
    if row.startswith("testinfra"):
        conftest = 'pytest_plugins = ["testinfra.plugin"]\n' + conftest
    (directory / "conftest.py").write_text(conftest)
    (directory / "test_ten.py").write_text(TEST_BODY)


def run_session(directory: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{directory} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--baseline", type=Path, help="src/python of another checkout, for testinfra rows before a change"
    )
    parser.add_argument("--rows", help="comma-separated rows to run (default: all)")
    args = parser.parse_args()

    root = build_root(Path.cwd())
    if root is None:
        raise SystemExit("run this from inside the Labrador repo (see the module docstring)")
    docker_ok = engine_problem() is None
    image = resolve_image(ADDRESS, [root]) if docker_ok else ""
    ours = os.pathsep.join([str(root / "src/python"), *sys.path])
    variants = {row: ours for row in FIXTURES if docker_ok or row not in DOCKER_ROWS}
    if args.baseline:
        for row in ("testinfra docker on bridge", "testinfra process"):
            if row in variants:
                variants[f"{row} (baseline)"] = os.pathsep.join([str(args.baseline), *sys.path])
    if args.rows:
        variants = {row: path for row, path in variants.items() if row in args.rows.split(",")}
    env = {**os.environ, "TESTCONTAINERS_RYUK_DISABLED": "true"}
    # Bytecode cached as in a developer's virtualenv (installed packages have theirs; sources
    # compiled on every run would charge testinfra, not the tools from site-packages, for it).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PEX_ROOT", None)
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in variants:
            for label, scope in SCOPES.items():
                write_session(
                    Path(tmp) / f"{row}-{scope}".replace(" ", "_"), row.split(" (")[0], scope, image
                )
                samples[f"{row} | {label}"] = []
        for _ in range(args.runs):
            for row, path in variants.items():
                for label, scope in SCOPES.items():
                    directory = Path(tmp) / f"{row}-{scope}".replace(" ", "_")
                    samples[f"{row} | {label}"].append(run_session(directory, {**env, "PYTHONPATH": path}))
    medians = {key: median(values) for key, values in samples.items()}
    bare = {label: medians.get(f"bare docker SDK loop | {label}") for label in SCOPES}
    rows = []
    for row in variants:
        cells = [row]
        for label in SCOPES:
            value = medians[f"{row} | {label}"]
            baseline = bare[label]
            ratio = f" ({value / baseline:.2f}x)" if baseline else ""
            cells.append(f"{value:.2f}s{ratio}")
        rows.append(cells)
    print(
        f"{TESTS} tests each needing web_server1; medians of {args.runs} interleaved runs; (x) vs bare SDK loop"
    )
    print(table(["", *SCOPES], rows))
    save("instances", samples)


if __name__ == "__main__":
    main()
