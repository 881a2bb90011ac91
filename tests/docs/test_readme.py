"""The README's examples, copied verbatim as a new user would, must pass on both backends."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testinfra._child import child_env

README = Path(__file__).resolve().parents[2] / "README.md"
BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.testinfra_docker)]


def readme_block(heading, language="python"):
    """The first code block in `language` after `heading`."""
    text = README.read_text()
    assert heading in text, f"the README lost its section {heading!r}"
    match = re.search(rf"```{language}\n(.*?)```", text[text.index(heading) :], re.DOTALL)
    assert match, f"the README lost its {language} example under {heading!r}"
    return match.group(1)


def run_example(tmp_path, pytestconfig, backend, infos, *args):
    """Run the test files in tmp_path as the README says: a conftest loads the plugin."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["testinfra.plugin"]\n')
    if backend == "docker":
        # Where Pants (or `pants package`, under dist/) leaves the image id of the address named.
        for info in infos:
            for root in (pytestconfig.invocation_params.dir, pytestconfig.invocation_params.dir / "dist"):
                if (root / info).is_file():
                    (tmp_path / info).parent.mkdir()
                    shutil.copy(root / info, tmp_path / info)
                    break
    env = child_env({"TESTINFRA_BACKEND": backend})
    if backend == "process":
        env.pop("TESTINFRA_REQUIRE_DOCKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_example_passes_as_written(backend, tmp_path, pytestconfig):
    (tmp_path / "test_example.py").write_text(readme_block("## testinfra in a test"))
    infos = [Path("src.python.labrador.web_server1") / "image.docker-info.json"]
    assert "1 passed" in run_example(tmp_path, pytestconfig, backend, infos)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_state_example_passes_as_written(backend, tmp_path, pytestconfig):
    heading = "### State per test"
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_dogs.sql").write_text(readme_block(heading, "sql"))
    # Copies of it in several files, run at once: each test still sees ids from 1.
    for copy in range(4):
        (tmp_path / f"test_example_{copy}.py").write_text(readme_block(heading))
    infos = [Path("docker.postgres") / "image.docker-info.json"]
    assert "4 passed" in run_example(tmp_path, pytestconfig, backend, infos, "-n", "2")
