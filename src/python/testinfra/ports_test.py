from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testinfra import PortAllocationError
from testinfra import Settings
from testinfra import reserve_port
from testinfra._child import child_env
from testinfra._ports import held_port_locks
from testinfra._ports import port_range
from testinfra._statedir import StateDir


def held() -> dict[int, int]:
    return held_port_locks(StateDir(Settings.from_env().state_dir))


def hold_ports(count: int) -> subprocess.Popen[str]:
    """A process that reserves `count` ports, prints them, and holds them until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from testinfra import reserve_port
        held = [reserve_port() for _ in range({count})]
        print(json.dumps([r.port for r in held]), flush=True)
        sys.stdin.read()
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def test_a_released_port_leaves_no_lock_file_behind() -> None:
    reservation = reserve_port()
    lock = StateDir(Settings.from_env().state_dir).sub("ports") / f"{reservation.port}.lock"
    assert lock.exists()
    reservation.release()
    assert not lock.exists()


def test_reserved_ports_are_outside_the_ephemeral_range() -> None:
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    with reserve_port() as reservation:
        assert reservation.port in port_range()
        assert not low <= reservation.port <= high


def test_a_held_port_is_not_handed_out_again_and_release_frees_it() -> None:
    first = reserve_port()
    others = [reserve_port() for _ in range(20)]
    assert first.port not in {r.port for r in others}
    assert held()[first.port] == os.getpid()
    first.release()
    assert not first.held
    # (Another process may take the port at once: check only that we no longer hold it.)
    assert held().get(first.port) != os.getpid()
    for reservation in others:
        reservation.release()


def test_concurrent_processes_never_get_the_same_port() -> None:
    children = [hold_ports(50) for _ in range(4)]
    try:
        assert all(child.stdout is not None for child in children)
        ports = [port for child in children for port in json.loads(child.stdout.readline())]  # type: ignore[union-attr]
    finally:
        for child in children:
            child.communicate("")
    assert len(ports) == 200
    assert len(set(ports)) == 200


def test_the_kernel_releases_a_reservation_when_its_owner_is_killed() -> None:
    child = hold_ports(1)
    assert child.stdout is not None
    (port,) = json.loads(child.stdout.readline())
    assert held()[port] == child.pid
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert held().get(port) != child.pid


def test_bad_range_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTINFRA_PORT_RANGE", "20000")
    with pytest.raises(ValueError, match="not of the form LOW-HIGH"):
        reserve_port()


def test_exhausted_range_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with reserve_port() as held:
        monkeypatch.setenv("TESTINFRA_PORT_RANGE", f"{held.port}-{held.port}")
        with pytest.raises(PortAllocationError, match=f"no free port in {held.port}-{held.port}"):
            reserve_port()
