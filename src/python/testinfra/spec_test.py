from __future__ import annotations

from typing import Any

import pytest

from testinfra import ServiceSpec
from testinfra import SpecError
from testinfra import TcpCheck
from testinfra._spec import render
from testinfra._spec import start_order


def spec(name: str = "svc", **fields: object) -> ServiceSpec:
    defaults: dict[str, object] = {"command": ("{python}", "-m", "x")}
    return ServiceSpec(name=name, **{**defaults, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "service name 'Bad Name' is invalid"),
        ({"name": "web\n"}, "service name 'web\\n' is invalid"),
        ({"port": 0}, "port 0 is not an integer in 1-65535"),
        ({"port": 70000}, "port 70000 is not an integer"),
        ({"port": True}, "port True is not an integer"),
        ({"port": 80.5}, "port 80.5 is not an integer"),
        ({"start_timeout": 0}, "must be finite positive numbers"),
        ({"start_timeout": float("nan")}, "must be finite positive numbers"),
        ({"stop_timeout": float("inf")}, "must be finite positive numbers"),
        ({"command": ("{python}", "{sock}")}, "unknown placeholder {sock} in command; known: {python}"),
        ({"command": ("{python}", "{port[0]}")}, "malformed placeholder"),
        ({"command": ("{python}", "{}")}, "malformed placeholder"),
        ({"command": ("{python}", "{web.url}")}, "unknown placeholder {web.url} in command"),
        ({"command": "python -m app"}, "command must be a non-empty sequence of arguments"),
        ({"command": ()}, "command must be a non-empty sequence of arguments"),
        ({"image": ""}, "image '' is empty"),
        ({"tmpfs": ("relative/dir",)}, "tmpfs entry 'relative/dir' is not an absolute path"),
        ({"ready": None}, "ready=None is not a readiness check"),
        ({"env": {"URL": "{other.url}"}}, "env refers to 'other', which is not in depends_on"),
        ({"env": {"URL": "{other.bogus}"}}, "placeholders in env name a dependency's address"),
        ({"env": {"URL": "{port}"}}, "placeholders in env name a dependency's address"),
        ({"env": {"BAD NAME": "x"}}, "must be NAME=str"),
        ({"command": ("{python}", "{fd}"), "ready": TcpCheck()}, "TcpCheck() proves nothing for a process"),
        ({"image": "x", "args": ("{fd}",)}, "unknown placeholder {fd} in args; known: {host}, {port}"),
        ({"image": "x", "args": ("{db.url}",)}, "unknown placeholder {db.url} in args"),
        ({"host_network": True}, "host_network=True applies to a container; this service has no image"),
        ({"image": "x", "host_network": True}, "must listen on the port testinfra reserves: pass it in args"),
        ({"image": "x", "host_network": 1, "args": ("{port}",)}, "host_network=1 must be True or False"),
    ],
)
def test_invalid_specs_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "svc", "command": ("{python}",)}
    with pytest.raises(SpecError) as info:
        ServiceSpec(**{**base, **fields})  # type: ignore[arg-type]
    assert message in str(info.value)


def test_a_dependency_field_that_does_not_exist_fails_at_construction() -> None:
    web = spec("web_server1")
    with pytest.raises(SpecError, match="placeholders in env name a dependency's address"):
        spec("web_server2", depends_on=(web,), env={"UPSTREAM": "{web_server1.bogus}"})


def test_double_braces_are_literal_braces() -> None:
    literal = spec(command=("{python}", "-c", "print({{'port': {port}}})"))
    assert literal.command is not None
    assert render(literal.command[2], lambda peer, name: "8080") == "print({'port': 8080})"


def test_tcp_check_with_a_protocol_exchange_is_allowed_on_an_inherited_socket() -> None:
    spec(command=("{python}", "{fd}"), ready=TcpCheck(send=b"PING\r\n", expect=b"+PONG"))


def test_the_fingerprint_is_stable_and_covers_dependencies() -> None:
    db = spec("db")
    api = spec("api", depends_on=(db,))
    assert api.fingerprint == spec("api", depends_on=(spec("db"),)).fingerprint
    assert api.fingerprint != spec("api", depends_on=(spec("db", port=5432),)).fingerprint


class CustomCheck:
    # Not a dataclass: its repr holds a memory address, different in every process.
    def probe(self, target: object) -> bool:
        return True


def test_a_custom_check_without_a_dataclass_repr_gives_one_fingerprint_everywhere() -> None:
    assert spec(ready=CustomCheck()).fingerprint == spec(ready=CustomCheck()).fingerprint


def test_spec_needs_an_image_or_a_command() -> None:
    with pytest.raises(SpecError, match="needs an image, a command, or both"):
        ServiceSpec(name="svc")


def test_start_order_puts_dependencies_first_once() -> None:
    db = spec("db")
    api = spec("api", depends_on=(db,))
    web = spec("web", depends_on=(api, db))
    assert [s.name for s in start_order(web)] == ["db", "api", "web"]


def test_a_cycle_by_name_is_reported_with_its_path() -> None:
    inner_a = spec("a")
    b = spec("b", depends_on=(inner_a,))
    a = spec("a", depends_on=(b,))
    with pytest.raises(SpecError, match="dependency cycle: a -> b -> a"):
        start_order(a)


def test_two_different_specs_with_one_name_are_rejected() -> None:
    left = spec("db", port=1)
    right = spec("db", port=2)
    with pytest.raises(SpecError, match="two different services are named 'db'"):
        start_order(spec("web", depends_on=(left, spec("api", depends_on=(right,)))))


HOST: dict[str, Any] = {"image": "x", "args": ("--port", "{port}"), "host_network": True}


def test_a_service_and_its_dependencies_use_the_hosts_network_alike() -> None:
    on_host = spec("web_server1", **HOST)
    bridged = spec("web_server1", image="y")
    with pytest.raises(SpecError, match="Set host_network=True on 'web_server2' too"):
        spec("web_server2", image="y", depends_on=(on_host,))
    with pytest.raises(SpecError, match="Set host_network=True on 'web_server1' too"):
        spec("web_server2", **HOST, depends_on=(bridged,))
    # A local process runs on the host's network anyway.
    spec("web_server2", depends_on=(on_host,))
    spec("web_server2", **HOST, depends_on=(on_host,))


def test_host_network_is_part_of_the_fingerprint() -> None:
    bridged = spec(image="x", args=("--port", "{port}"))
    assert bridged.fingerprint != spec(**HOST).fingerprint
