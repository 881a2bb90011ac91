from __future__ import annotations

import pytest

from testinfra import ServiceSpec
from testinfra import SpecError
from testinfra._spec import start_order


def spec(name: str = "svc", **fields: object) -> ServiceSpec:
    return ServiceSpec(name=name, command=("{python}", "-m", "x"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "service name 'Bad Name' is invalid"),
        ({"port": 0}, "port 0 is out of range 1-65535"),
        ({"port": 70000}, "port 70000 is out of range"),
        ({"start_timeout": 0}, "must be positive"),
        ({"command": ("{python}", "{sock}")}, "unknown placeholder(s) ['sock']"),
        ({"env": {"URL": "{other.url}"}}, "env refers to 'other', which is not in depends_on"),
    ],
)
def test_invalid_specs_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "svc", "command": ("{python}",)}
    with pytest.raises(SpecError) as info:
        ServiceSpec(**{**base, **fields})  # type: ignore[arg-type]
    assert message in str(info.value)


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
