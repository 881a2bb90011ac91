"""python -m testinfra {doctor,ls,reap}: look at and clean up what testinfra runs on this machine."""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence

from testinfra._ports import held_port_locks
from testinfra._ports import port_range
from testinfra._reaper import age
from testinfra._reaper import list_resources
from testinfra._reaper import reap
from testinfra._state import state_dir

BASE_IMAGE = "labrador/python-base:3.11"


def doctor() -> int:
    """Print what testinfra can use here; exit 1 when nothing can run services."""
    from testinfra._docker import connect
    from testinfra._errors import BackendUnavailableError

    problems = 0
    print(f"python        {platform.python_version()} ({sys.executable})")
    try:
        client = connect()
    except BackendUnavailableError as exc:
        print(f"docker        not available: {exc}")
        print("              services will run as local processes (backend auto/process)")
    else:
        version = client.version().get("Version", "?")
        print(f"docker        engine {version} answers")
        found = client.images.list(name=BASE_IMAGE)
        print(f"base image    {BASE_IMAGE}: {'present' if found else 'missing (bash docker/base-image.sh)'}")
        client.close()
    for name in ("python3.9", "python3.11"):
        path = shutil.which(name)
        ok = path is not None and subprocess.run([path, "-c", ""], capture_output=True).returncode == 0
        print(f"{name:<13} {path if ok else 'not found'}")
    try:
        ports = port_range()
        print(
            f"port range    {ports.start}-{ports.stop - 1} ({len(ports)} ports), {len(held_port_locks())} reserved now"
        )
    except ValueError as exc:
        print(f"port range    invalid: {exc}")
        problems += 1
    print(f"state dir     {state_dir()}")
    return 1 if problems else 0


def ls(run: str | None) -> int:
    resources = list_resources(run=run)
    if not resources:
        print("no testinfra resources on this machine")
        return 0
    print(f"{'KIND':<10} {'ID':<14} {'NAME':<40} {'RUN':<13} {'OWNER':<8} {'STATE':<8} AGE")
    for r in resources:
        state = "kept" if r.kept else "orphan" if r.orphaned else "in use"
        print(f"{r.kind:<10} {r.id:<14} {r.name:<40} {r.run:<13} {r.owner.pid:<8} {state:<8} {age(r)}")
    return 0


def reap_command(run: str | None, everything: bool, kept: bool) -> int:
    resources = [r for r in list_resources(run=run) if everything or r.orphaned or (kept and r.kept)]
    removed = reap(resources)
    for r in removed:
        print(f"removed {r.kind} {r.id} ({r.name}, run {r.run})")
    if not removed:
        print("nothing to remove (in use and kept resources stay; --kept, --all remove them)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testinfra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="check the engine, base image, Pythons and port range")
    ls_parser = commands.add_parser(
        "ls", help="list testinfra containers, networks and processes, with owners"
    )
    reap_parser = commands.add_parser("reap", help="remove resources whose owner process is dead")
    for sub in (ls_parser, reap_parser):
        sub.add_argument("--run", help="only the resources of this run id")
    reap_parser.add_argument(
        "--kept", action="store_true", help="also remove services kept after failed tests"
    )
    reap_parser.add_argument(
        "--all", action="store_true", help="remove every testinfra resource, in use or not"
    )
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor()
    if args.command == "ls":
        return ls(args.run)
    return reap_command(args.run, args.all, args.kept)


if __name__ == "__main__":
    sys.exit(main())
