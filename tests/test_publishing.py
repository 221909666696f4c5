"""Publishing: the GitHub Actions workflow that builds and deploys the book, the one repository
address, and environment.yml.

The workflow cannot run here (no GitHub, no download of the weights); it is checked against
GitHub's workflow schema (vendored by check-jsonschema) and for what it must do.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"


def workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))      # YAML 1.1 reads the key `on` as True
    return doc


def steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", str(path)], capture_output=True, text=True)


def test_workflow_matches_githubs_schema(tmp_path):
    result = schema_check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"                 # the check can fail
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1))
    assert schema_check(broken).returncode != 0


def test_workflow_builds_with_pretrained_weights_and_deploys_to_pages():
    doc = workflow()
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = doc["jobs"]["build"]
    runs = [s.get("run", "") for s in build["steps"]]
    uses = [s.get("uses", "") for s in build["steps"]]
    download = next(i for i, r in enumerate(runs) if "vgg16(weights='imagenet')" in r)
    make = next(i for i, r in enumerate(runs) if "python -m lrpkit.book build" in r)
    assert download < make and "--weights imagenet" in runs[make]
    assert "-e '.[book]'" in " ".join(runs)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"                      # where lrpkit.book writes the site
    assert uses.index(upload["uses"]) > make
    deploy = doc["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])


def test_workflow_caches_the_hub_folder_the_weights_go_to(monkeypatch, tmp_path):
    """The cached path is where lrpkit.models (torchvision's API) puts the weights under TORCH_HOME."""
    from lrpkit import models

    build = workflow()["jobs"]["build"]
    torch_home = build["env"]["TORCH_HOME"]
    cached = [s["with"]["path"] for s in build["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert "${{ env.TORCH_HOME }}/hub/checkpoints" in cached
    assert "_build/figures" in cached                         # executed notebooks, reused by fingerprint
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert models.pretrained_file("vgg16").parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert torch_home.endswith("/.cache/torch")               # under the workspace, ignored by the book


# --------------------------------------------------------------------------------------------------
# one repository address


def config_url(root: Path = REPO) -> str:
    return yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]


def install_cells(root: Path = REPO) -> dict[str, str]:
    found = {}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if "%pip install" in "".join(c["source"])]
        assert len(cells) == 1, f"{path.name}: expected one Colab install cell"
        assert "remove-cell" in cells[0]["metadata"].get("tags", []), path.name
        found[path.name] = "".join(cells[0]["source"])
    return found


def test_launch_buttons_and_install_cells_name_one_repository():
    url = config_url()
    for name, source in install_cells().items():
        assert re.search(rf'@ git\+{re.escape(url)}"', source), f"{name} installs from elsewhere than {url}"
        # every registry notebook glues with myst_nb, which only the [book] extra installs
        assert '"lrpkit[book] @' in source, f"{name} installs lrpkit without the [book] extra"
    # the launch buttons read repository.url from the configuration, nothing else
    extension = (REPO / "book" / "_ext" / "lrpkit_launch.py").read_text()
    assert 'options.get("repository_url"' in extension and "github.com/lrpkit" not in extension


def test_set_repository_url_rewrites_config_and_notebooks(tmp_path):
    root = tmp_path / "book"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    script = REPO / "scripts" / "set-repository-url.py"
    spec = importlib.util.spec_from_file_location("set_repository_url", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["https://github.com/someone/lrp-book", "--root", str(root)]) == 0
    assert config_url(root) == "https://github.com/someone/lrp-book"
    for source in install_cells(root).values():
        assert 'git+https://github.com/someone/lrp-book"' in source
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert tool.main(["http://example.org/x", "--root", str(root)]) == 2       # refused, nothing written
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------------------------------
# environment.yml


def test_environment_yml_is_a_conda_environment_of_the_project():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "lrpkit" and env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda if d.startswith("python="))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(v) for v in requires.removeprefix(">=").split("."))
    assert tuple(int(v) for v in python.removeprefix("python=").split(".")) >= minimum
    assert "pip" in conda
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[-1] == "-e ."          # conda runs pip in the folder of environment.yml: this checkout
    assert "check-jsonschema==0.39.0" in pip
