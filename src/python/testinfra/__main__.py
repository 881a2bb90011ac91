"""python -m testinfra {doctor,ls,reap}: look at and clean up what testinfra runs on this machine.

Settings come from the TESTINFRA_* environment, as in a test session. Exit status: 0 when all
went well, 1 when a backend could not be asked (its resources were not seen), 2 on bad input or
an unusable state directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence

from testinfra._backends import open_all
from testinfra._backends.base import Backend
from testinfra._backends.base import Resource
from testinfra._errors import TestinfraError
from testinfra._lease import idle_leases
from testinfra._lease import remove_lease
from testinfra._owner import process_uid
from testinfra._ports import held_port_locks
from testinfra._ports import port_range
from testinfra._reaper import age
from testinfra._reaper import list_resources
from testinfra._reaper import reap
from testinfra._settings import Settings
from testinfra._statedir import StateDir

_PARTIAL = 1
_USAGE = 2


def doctor(settings: Settings, state: StateDir, images: Sequence[str]) -> int:
    """Print what testinfra can use here; exit 1 when something it needs is missing."""
    from testinfra._backends.docker import connect
    from testinfra._backends.docker import host_network_problem

    problems = 0
    print(f"python        {platform.python_version()} ({sys.executable})")
    try:
        client = connect()
    except TestinfraError as exc:
        print(f"docker        not available: {exc}")
        print("              services will run as local processes (backend auto/process)")
        problems += bool(images) or settings.require_docker
    else:
        print(f"docker        engine {client.version().get('Version', '?')} answers")
        shared_network = host_network_problem(client)
        if shared_network is None:
            print("host network  the engine's is this machine's: host_network=True specs use it")
        else:
            print(f"host network  not this machine's ({shared_network}): host_network=True specs run bridged")
        for image in images:
            found = client.images.list(name=image)
            print(f"image         {image}: {'present' if found else 'missing'}")
            problems += not found
        client.close()
    for name in ("python3.9", "python3.11"):
        path = shutil.which(name)
        ok = path is not None and subprocess.run([path, "-c", ""], capture_output=True).returncode == 0
        print(f"{name:<13} {path if ok else 'not found'}")
    ports = port_range(settings.port_range)
    print(
        f"port range    {ports.start}-{ports.stop - 1} ({len(ports)} ports), {len(held_port_locks(state))} reserved now"
    )
    print(f"state dir     {state.root}")
    return _PARTIAL if problems else 0


def _warn(problems: dict[str, str]) -> int:
    for backend, problem in problems.items():
        print(f"warning: {backend} resources not listed: {problem}", file=sys.stderr)
    return _PARTIAL if problems else 0


def ls(backends: Sequence[Backend], problems: dict[str, str], state_dir: StateDir, run: str | None) -> int:
    resources = list_resources(backends, run=run)
    if not resources:
        print("no testinfra resources found")
        return _warn(problems)
    warm = idle_leases(state_dir)
    name = max(len("NAME"), *(len(r.name) for r in resources))
    run_id = max(len("RUN"), *(len(r.run) for r in resources))
    print(f"{'KIND':<10} {'ID':<14} {'NAME':<{name}} {'RUN':<{run_id}} {'OWNER':<8} {'STATE':<8} AGE")
    for r in resources:
        state = "kept" if r.kept else "orphan" if r.orphaned else "warm" if r.run in warm else "in use"
        owner = str(r.owner.pid) if r.owner else "?"
        print(f"{r.kind:<10} {r.id:<14} {r.name:<{name}} {r.run:<{run_id}} {owner:<8} {state:<8} {age(r)}")
    return _warn(problems)


def _confirm(resources: list[Resource]) -> bool:
    if not sys.stdin.isatty():
        return False
    print(f"{len(resources)} resource(s) in use by running tests would be removed:")
    for r in resources:
        print(f"  {r.kind} {r.id} ({r.name}, run {r.run})")
    return input("remove them? [y/N] ").strip().lower() in ("y", "yes")


def reap_command(
    backends: Sequence[Backend],
    problems: dict[str, str],
    state_dir: StateDir,
    run: str | None,
    everything: bool,
    kept: bool,
    yes: bool,
) -> int:
    settings = Settings.from_env()
    for lease_run, slot in idle_leases(state_dir).items():
        if run in (None, lease_run):
            with slot.locked():
                if not slot.users.prune():  # still nobody: its keeper leaves once the record is gone
                    for r in list_resources(backends, run=lease_run):
                        print(f"removed {r.kind} {r.id} ({r.name}, warm lease {lease_run})")
                    remove_lease(settings, state_dir, slot)
    resources = list_resources(backends, run=run)
    doomed = [r for r in resources if r.orphaned or (kept and r.kept)]
    in_use = [r for r in resources if everything and r not in doomed and not r.kept]
    # Containers are engine-wide: --all never touches other users' runs.
    in_use = [r for r in in_use if r.kind != "container" or _mine(r)]
    if in_use and not (yes or _confirm(in_use)):
        print(
            f"{len(in_use)} resource(s) are in use by running tests and were left alone; "
            "pass --yes to remove them anyway",
            file=sys.stderr,
        )
        in_use = []
    removed = reap(backends, doomed + in_use)
    for r in removed:
        print(f"removed {r.kind} {r.id} ({r.name}, run {r.run})")
    if not removed:
        print("nothing removed (in-use and kept resources stay; --kept, --all change that)")
    return _warn(problems)


def _mine(resource: Resource) -> bool:
    owner = resource.owner
    return owner is not None and owner.visible and process_uid(owner.pid) in (None, os.geteuid())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testinfra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_parser = commands.add_parser("doctor", help="check the engine, images, Pythons and port range")
    doctor_parser.add_argument(
        "--image", action="append", default=[], help="an image the tests need (repeatable), e.g. a base image"
    )
    ls_parser = commands.add_parser(
        "ls", help="list testinfra containers, networks and processes, with owners"
    )
    reap_parser = commands.add_parser(
        "reap", help="remove resources whose owner process is dead, and warm leases nobody uses"
    )
    for sub in (ls_parser, reap_parser):
        sub.add_argument("--run", help="only the resources of this run id")
    reap_parser.add_argument(
        "--kept", action="store_true", help="also remove services kept after failed tests"
    )
    reap_parser.add_argument(
        "--all",
        action="store_true",
        help="also remove your resources that running tests still use (asks first)",
    )
    reap_parser.add_argument("--yes", action="store_true", help="with --all: do not ask")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        state = StateDir(settings.state_dir)
        if args.command == "doctor":
            return doctor(settings, state, args.image)
        backends, problems = open_all(settings, state)
        try:
            if args.command == "ls":
                return ls(backends, problems, state, args.run)
            return reap_command(backends, problems, state, args.run, args.all, args.kept, args.yes)
        finally:
            for backend in backends:
                backend.close()
    except TestinfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _USAGE


if __name__ == "__main__":
    sys.exit(main())
