"""A failed test's JUnit XML carries its services' state, address and log tail (what a CI page shows)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

# The inner session imports this spec itself; importing it here makes Pants ship it (and the
# service it runs) into the sandbox.
from tests.services.web_server1 import WEB_SERVER1

INNER_TEST = """
import time

import httpx

from testinfra import service_fixture
from tests.services.web_server1 import WEB_SERVER1

web_server1 = service_fixture(WEB_SERVER1)


def test_fails(web_server1):
    httpx.get(web_server1.url + "/dogs/424242")
    # The access log line is written after the response: fail once it is there.
    deadline = time.monotonic() + 30
    while "/dogs/424242" not in web_server1.logs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert False, "deliberate failure"


def test_passes(web_server1):
    assert httpx.get(web_server1.url + "/health").status_code == 200
"""


def test_a_failed_test_carries_its_service_logs_into_the_junit_xml(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["testinfra.plugin"]\n')
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    env = {
        **os.environ,
        # Pants' source roots are relative to the sandbox; the inner session runs elsewhere.
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
        # The process backend: this checks the report, not the engine.
        "TESTINFRA_BACKEND": "process",
    }
    env.pop("TESTINFRA_REQUIRE_DOCKER", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--junitxml=report.xml",
            "-o",
            "junit_logging=all",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    cases = {case.get("name"): case for case in ET.parse(tmp_path / "report.xml").getroot().iter("testcase")}
    failed_err = cases["test_fails"].findtext("system-err") or ""
    assert f"testinfra: {WEB_SERVER1.name} (process, running) at http://127.0.0.1:" in failed_err
    assert '"GET /dogs/424242 HTTP/1.1" 404' in failed_err
    # Only failed tests get the sections; and the terminal shows each section once.
    assert "testinfra:" not in (cases["test_passes"].findtext("system-err") or "")
    assert result.stdout.count(f"testinfra: {WEB_SERVER1.name} (process") == 1, result.stdout
