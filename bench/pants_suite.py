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
untimed, as a developer editing between runs would (what the last run left starts meanwhile). Containers
are counted by who starts them: a run's tests, or (leases and spares) their keepers, per run.

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
# The names of the containers of leases and spares (see testinfra._lease), made by their keepers.
LEASED = "testinfra-lease-"


class Creates:
    """Every container testinfra creates while the benchmark runs, with its time and name."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []
        self._client = docker.from_env()
        self._events = self._client.events(
            decode=True,
            since=int(time.time()),
            filters={"type": "container", "event": "create", "label": DEFAULT_LABEL},
        )
        threading.Thread(target=self._watch, daemon=True).start()
        time.sleep(0.2)  # (the event stream is open before the first create)

    def _watch(self) -> None:
        for event in self._events:
            self.seen.append((time.monotonic(), event.get("Actor", {}).get("Attributes", {}).get("name", "")))

    def during(self, start: float, end: float) -> int:
        """Containers a run's tests created (not leases or spares: their keepers' work)."""
        return sum(1 for at, name in self.seen if start <= at <= end and not name.startswith(LEASED))

    def leased(self) -> int:
        return sum(1 for _, name in self.seen if name.startswith(LEASED))

    def close(self) -> None:
        self._events.close()
        self._client.close()


def run_suite(
    checkout: Path,
    targets: list[str],
    env: dict[str, str],
    edit: str | None,
    pytest: bool,
    pause: float,
    creates: Creates,
) -> tuple[float, int]:
    time.sleep(pause)
    if edit:
        with open(checkout / edit, "a") as file:
            file.write(f"# edited {time.time()}\n")
    command = ["./pants", "test", *targets] if edit else ["./pants", "test", "--force", *targets]
    if pytest:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets]
        env = {**env, "PYTHONPATH": os.pathsep.join([str(checkout / "src/python"), str(checkout), *sys.path])}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # (bytecode cached, as in a developer's virtualenv)
    start = time.monotonic()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: ./pants test failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    time.sleep(0.5)  # the last events reach the stream
    return elapsed, creates.during(start, start + elapsed)


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
    creates = Creates()
    try:
        for _ in range(args.runs):
            for name, path in checkouts.items():
                samples[name].append(
                    run_suite(path, args.targets, env, args.edit, args.pytest, args.pause, creates)
                )
    finally:
        for path, text in originals.items():
            (path / args.edit).write_text(text)
        if args.reuse_ttl:
            testinfra_cli(["reap"])  # what the runs left warm
        creates.close()
    rows = []
    for name, values in samples.items():
        rows.append([name, f"{median([v[0] for v in values]):.1f}", str(int(median([v[1] for v in values])))])
    # (Only a checkout with leases makes them; the older one compared has none.)
    rows[0].append(f"{creates.leased() / args.runs:g}")
    how = f"./pants test, after editing {args.edit}" if args.edit else "./pants test --force"
    how = "pytest" if args.pytest else how
    how += f", warm reuse (TTL {args.reuse_ttl:g} s)" if args.reuse_ttl else ""
    how += f", {args.pause:g} s untimed before each run" if args.pause else ""
    print(f"{how} {' '.join(args.targets)}; medians of {args.runs} interleaved runs")
    for row in rows[1:]:
        row.append("")
    print(table(["checkout", "wall s", "containers the tests started", "by keepers, per run"], rows))
    mode = ("-pytest" if args.pytest else "-edit" if args.edit else "") + ("-reuse" if args.reuse_ttl else "")
    save(f"pants_suite{mode}", {"how": how, **samples})


if __name__ == "__main__":
    main()
