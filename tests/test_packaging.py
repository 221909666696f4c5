"""environment.yml mirrors the pip pins of pyproject.toml; .ci/run calls the README's test command;
the package builds without deprecation warnings."""
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins.extend(extra)
    return pins


def test_every_dependency_is_pinned_exactly():
    for pin in pyproject_pins():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", pin), pin


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    mirrored = sorted(p.lower() for p in pip if "==" in p)
    assert mirrored == sorted(p.lower() for p in pyproject_pins())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]


def test_wheel_builds_without_deprecation_warnings(tmp_path):
    """The license is an SPDX expression (PEP 639), not the TOML table setuptools deprecated: the
    build prints no deprecation warning. Built offline with this environment's setuptools, which
    satisfies build-system.requires as the one pip would fetch does."""
    from importlib.metadata import version
    from packaging.requirements import Requirement

    for requirement in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]):
        assert requirement.specifier.contains(version(requirement.name)), requirement
    source = tmp_path / "source"
    shutil.copytree(ROOT / "lrpkit", source / "lrpkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           "--no-index", str(source), "-w", str(tmp_path / "wheel")],
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "deprecat" not in output.lower() and "BuildBackendWarning" not in output, output[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("lrpkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
