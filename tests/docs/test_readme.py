"""The README's example, copied verbatim as a new user would, must pass on both backends."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testinfra._child import child_env

README = Path(__file__).resolve().parents[2] / "README.md"
INFO = Path("src.python.labrador.web_server1") / "image.docker-info.json"


def readme_example():
    """The first python code block after the "testinfra in a test" heading."""
    text = README.read_text()
    section = text[text.index("## testinfra in a test") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its example"
    return match.group(1)


@pytest.mark.parametrize("backend", ["process", pytest.param("docker", marks=pytest.mark.testinfra_docker)])
def test_the_readme_example_passes_as_written(backend, tmp_path, pytestconfig):
    example = readme_example()
    (tmp_path / "test_example.py").write_text(example)
    # As the README says: without the installed distribution, a conftest loads the plugin.
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["testinfra.plugin"]\n')
    if backend == "docker":
        # Where Pants (or `pants package`, under dist/) leaves the image id of the address it names.
        for root in (pytestconfig.invocation_params.dir, pytestconfig.invocation_params.dir / "dist"):
            if (root / INFO).is_file():
                (tmp_path / INFO).parent.mkdir()
                shutil.copy(root / INFO, tmp_path / INFO)
                break
    env = child_env({"TESTINFRA_BACKEND": backend})
    if backend == "process":
        env.pop("TESTINFRA_REQUIRE_DOCKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
