"""`./pants test` of a set of targets (or plain pytest of paths): wall time, and service starts.

Every container testinfra creates carries its label, so the engine's event stream counts the
starts whatever version of testinfra made them; run it on this checkout and on another (an older
commit, `--checkout`) to compare, in the same run, interleaved:

    ./pants package bench:pants_suite
    dist/bench/pants_suite.pex --runs 3 --checkout /path/to/old/checkout tests/e2e: tests/fixture::

Without targets, the test targets both checkouts have under tests/. `--edit FILE` measures the
edit-test loop instead of a forced run: before each run a comment is appended to FILE (a test
file, in each checkout), so only what depends on it runs again; the file is restored at the end.
`--pytest` runs `python -m pytest PATHS` in each checkout instead of Pants (e.g. one test file).
`--reuse-ttl S` turns on warm reuse across runs (TESTINFRA_REUSE_TTL; a checkout without it
ignores it) and removes what is left warm at the end; `--pause S` waits S seconds before each run,
untimed, as a developer editing between runs would (what the last run left starts meanwhile). The
containers counted are those created from the start of the pause to the end of the run.

    dist/bench/pants_suite.pex --runs 5 --checkout /old --reuse-ttl 900 --pause 10 \
        --edit tests/e2e/test_kennel.py tests/e2e:
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker

from bench._common import median
from bench._common import save
from bench._common import table
from testinfra.__main__ import main as testinfra_cli
from testinfra._pants import build_root
from testinfra._settings import DEFAULT_LABEL

DEFAULT_TARGETS = ["tests/naive:", "tests/fixture::", "tests/resources:", "tests/e2e:"]


def count_creates(stop: threading.Event, counted: list[int]) -> None:
    client = docker.from_env()
    since = int(time.time())
    events = client.events(
        decode=True, since=since, filters={"type": "container", "event": "create", "label": DEFAULT_LABEL}
    )
    try:
        for _ in events:
            counted[0] += 1
            if stop.is_set():
                break
    finally:
        events.close()
        client.close()


def run_suite(
    checkout: Path, targets: list[str], env: dict[str, str], edit: str | None, pytest: bool, pause: float
) -> tuple[float, int]:
    counted = [0]
    stop = threading.Event()
    watcher = threading.Thread(target=count_creates, args=(stop, counted), daemon=True)
    watcher.start()
    time.sleep(max(0.2, pause))  # (the event stream is open before the first create)
    if edit:
        with open(checkout / edit, "a") as file:
            file.write(f"# edited {time.time()}\n")
    command = ["./pants", "test", *targets] if edit else ["./pants", "test", "--force", *targets]
    if pytest:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets]
        env = {**env, "PYTHONPATH": os.pathsep.join([str(checkout / "src/python"), str(checkout), *sys.path])}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # (bytecode cached, as in a developer's virtualenv)
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: ./pants test failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    time.sleep(0.5)  # the last events reach the stream
    return elapsed, counted[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--checkout", type=Path, action="append", default=[], help="another checkout to compare"
    )
    parser.add_argument("--edit", help="a test file to touch before each run (the edit-test loop)")
    parser.add_argument("--pytest", action="store_true", help="run plain pytest on the targets (paths)")
    parser.add_argument("--reuse-ttl", type=float, default=0.0, help="warm reuse across runs, seconds")
    parser.add_argument("--pause", type=float, default=0.0, help="untimed seconds before each run")
    parser.add_argument("targets", nargs="*", default=DEFAULT_TARGETS)
    args = parser.parse_args()
    root = build_root(Path.cwd())
    if root is None:
        raise SystemExit("run this from inside the Labrador repo")
    # Pants runs on its own Python: none of this PEX's import path may leak into it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PEX")}
    env["TESTINFRA_REQUIRE_DOCKER"] = "1"
    if args.reuse_ttl:
        env["TESTINFRA_REUSE_TTL"] = str(args.reuse_ttl)
    checkouts = {"this checkout": root, **{str(path): path for path in args.checkout}}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in checkouts}
    originals = {path: (path / args.edit).read_text() for path in checkouts.values()} if args.edit else {}
    try:
        for _ in range(args.runs):
            for name, path in checkouts.items():
                samples[name].append(run_suite(path, args.targets, env, args.edit, args.pytest, args.pause))
    finally:
        for path, text in originals.items():
            (path / args.edit).write_text(text)
        if args.reuse_ttl:
            testinfra_cli(["reap"])  # what the runs left warm
    rows = []
    for name, values in samples.items():
        rows.append([name, f"{median([v[0] for v in values]):.1f}", str(int(median([v[1] for v in values])))])
    how = f"./pants test, after editing {args.edit}" if args.edit else "./pants test --force"
    how = "pytest" if args.pytest else how
    how += f", warm reuse (TTL {args.reuse_ttl:g} s)" if args.reuse_ttl else ""
    how += f", {args.pause:g} s untimed before each run" if args.pause else ""
    print(f"{how} {' '.join(args.targets)}; medians of {args.runs} interleaved runs")
    print(table(["checkout", "wall s", "containers started"], rows))
    save("pants_suite", {name: values for name, values in samples.items()})


if __name__ == "__main__":
    main()
