"""The testing progression, timed: the same six web_server1 checks in each style.

    ./pants package src/python/labrador/web_server1:image bench:progression
    dist/bench/progression.pex --runs 5

(A PEX rather than `./pants run`: the benchmark runs Pants itself, which must not wait for the
Pants process that would be running the benchmark.)

Styles: naive (a server per test, by hand), function-scoped fixture, module scope, session scope,
the function-scoped file under xdist -n 2, and `./pants test` of the session-scoped file,
forced (no result cache) and memoized. Prints wall-time medians and writes a bar chart.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import RESULTS
from bench._common import median
from bench._common import save
from bench._common import table
from testinfra._pants import build_root

_root = build_root(Path.cwd())
if _root is None:
    raise SystemExit("run this from inside the Labrador repo (see the module docstring)")
ROOT = _root
# Exactly the six shared checks (tests.checks.ALL_CHECKS) in every fixture style.
CHECKS = ["-k", "test_web_server1"]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
# The session-scoped file: the same six checks, run by Pants (its result cache is the difference).
PANTS_TARGETS = ["tests/fixture/test_session_scope.py"]

STYLES: dict[str, list[str]] = {
    "naive (server per test, by hand)": [*PYTEST, "tests/naive"],
    "fixture, function scope": [*PYTEST, *CHECKS, "tests/fixture/test_function_scope.py"],
    "fixture, module scope": [*PYTEST, *CHECKS, "tests/fixture/test_module_scope.py"],
    "fixture, session scope": [*PYTEST, *CHECKS, "tests/fixture/test_session_scope.py"],
    "function scope, xdist -n 2": [*PYTEST, "-n", "2", *CHECKS, "tests/fixture/test_function_scope.py"],
    "pants test session scope, forced": ["./pants", "test", "--force", *PANTS_TARGETS],
    "pants test session scope, memoized": ["./pants", "test", *PANTS_TARGETS],
}


def run(command: list[str], env: dict[str, str]) -> float:
    if command[0] == "./pants":
        # Pants runs on its own Python 3.9: none of this PEX's import path may leak into it.
        env = {k: v for k, v in env.items() if k != "PYTHONPATH" and not k.startswith("PEX")}
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def chart(medians: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(medians)
    ax.barh(names, [medians[n] for n in names], color="#6036fb")
    ax.invert_yaxis()
    ax.set_xlabel("wall time, seconds (median)")
    ax.set_title("The same six checks against web_server1, by test style")
    for i, name in enumerate(names):
        ax.text(medians[name], i, f" {medians[name]:.2f}s", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pants", action="store_true", help="skip the ./pants rows")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src/python"), str(ROOT), *sys.path])}
    styles = {k: v for k, v in STYLES.items() if not (args.no_pants and v[0] == "./pants")}
    samples: dict[str, list[float]] = {name: [] for name in styles}
    for _ in range(args.runs):
        for name, command in styles.items():
            samples[name].append(run(command, env))

    medians = {name: median(values) for name, values in samples.items()}
    naive = medians["naive (server per test, by hand)"]
    rows = [[name, f"{m:.2f}", f"{naive / m:.1f}x"] for name, m in medians.items()]
    backend = os.environ.get("TESTINFRA_BACKEND", "auto")
    print(f"{args.runs} runs each, interleaved; backend {backend}")
    print(table(["style", "median s", "vs naive"], rows))
    save("progression", samples)
    RESULTS.mkdir(exist_ok=True)
    chart(medians, RESULTS / "progression.png")
    print(f"chart: {RESULTS / 'progression.png'}")


if __name__ == "__main__":
    main()
