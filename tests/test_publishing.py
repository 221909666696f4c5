"""Publishing: the GitHub Actions workflow that builds and deploys the book, the one repository
address (launch buttons, notebooks, CITATION.cff), the licences, the citation, the page footer, and
environment.yml.

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
import urllib.parse
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
    # what a grading machine installs (the otter autograders' requirement)
    from lrpkit.teaching import autograder

    assert autograder.REQUIREMENT == f"lrpkit[book] @ git+{url}"
    # the launch buttons read repository.url from the configuration, nothing else
    extension = (REPO / "book" / "_ext" / "lrpkit_launch.py").read_text()
    assert 'options.get("repository_url"' in extension and "github.com/lrpkit" not in extension


def test_set_repository_url_rewrites_config_notebooks_citation_and_autograder(tmp_path):
    root = tmp_path / "book"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "CITATION.cff", root / "CITATION.cff")
    (root / "lrpkit" / "teaching").mkdir(parents=True)
    shutil.copy(REPO / "lrpkit" / "teaching" / "autograder.py", root / "lrpkit" / "teaching" / "autograder.py")
    script = REPO / "scripts" / "set-repository-url.py"
    spec = importlib.util.spec_from_file_location("set_repository_url", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["https://github.com/someone/lrp-book", "--root", str(root)]) == 0
    assert config_url(root) == "https://github.com/someone/lrp-book"
    for source in install_cells(root).values():
        assert 'git+https://github.com/someone/lrp-book"' in source
    assert citation(root)["repository-code"] == "https://github.com/someone/lrp-book"
    assert "lrpkit/lrpkit" not in (root / "CITATION.cff").read_text()
    assert 'REQUIREMENT = "lrpkit[book] @ git+https://github.com/someone/lrp-book"' in (
        root / "lrpkit" / "teaching" / "autograder.py").read_text()
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert tool.main(["http://example.org/x", "--root", str(root)]) == 2       # refused, nothing written
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def load_extension(name: str):
    """A Sphinx extension of book/_ext as a module (no Sphinx run)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_links_open_the_source_notebook_on_colab_binder_and_a_jupyterhub():
    launch = load_extension("lrpkit_launch")
    url, branch, path = config_url(), "main", "notebooks/fig-2-1-lrp-random-image.ipynb"
    owner, repo = url.removeprefix("https://github.com/").split("/")
    assert launch.colab_link("https://colab.research.google.com/", url, branch, path) == (
        f"https://colab.research.google.com/github/{owner}/{repo}/blob/main/{path}")
    binder = urllib.parse.urlsplit(launch.binder_link("https://mybinder.org", url, branch, path))
    assert (binder.netloc, binder.path) == ("mybinder.org", f"/v2/gh/{owner}/{repo}/main")
    assert urllib.parse.parse_qs(binder.query) == {"labpath": [path]}
    hub = urllib.parse.urlsplit(launch.jupyterhub_link("https://hub.example.org/", url, "dev", path))
    assert (hub.netloc, hub.path) == ("hub.example.org", "/hub/user-redirect/git-pull")
    # nbgitpuller clones into ~/<repository name> and opens the notebook there
    assert urllib.parse.parse_qs(hub.query) == {"repo": [url], "branch": ["dev"],
                                                "urlpath": [f"lab/tree/{repo}/{path}"]}
    assert launch.github_parts(url + ".git/") == (owner, repo)
    with pytest.raises(ValueError, match="https://github.com/OWNER/REPO"):
        launch.github_parts("https://gitlab.com/x/y")


def test_launch_buttons_are_the_configured_services_only():
    launch = load_extension("lrpkit_launch")
    buttons = yaml.safe_load((REPO / "_config.yml").read_text())["launch_buttons"]
    assert buttons["binderhub_url"] == "https://mybinder.org"
    assert buttons["jupyterhub_url"] == ""                  # no public default: no button
    path = "notebooks/a.ipynb"
    assert [name for name, _, _ in launch.launch_links(buttons, config_url(), "main", path)] == ["Colab", "Binder"]
    with_hub = launch.launch_links({**buttons, "jupyterhub_url": "https://hub.example.org"}, config_url(), "main", path)
    assert [name for name, _, _ in with_hub] == ["Colab", "Binder", "JupyterHub"]
    assert with_hub[2][2].startswith("https://hub.example.org/hub/user-redirect/git-pull?repo=")
    assert launch.launch_links(buttons, "https://example.org/x/y", "main", path) == []


def test_reproducing_page_prints_the_repository_address_and_the_hub_link():
    """reproducing.md shows the address through MyST substitutions the launch extension defines from
    _config.yml at build time, not a pointer to the configuration."""
    launch = load_extension("lrpkit_launch")
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert "substitution" in config["parse"]["myst_enable_extensions"]
    options = {"repository_url": config_url(), "repository_branch": config["repository"]["branch"],
               "launch_buttons": config["launch_buttons"]}
    values = launch.substitutions(options)
    assert values["repository_url"] == f"[`{config_url()}`]({config_url()})"     # shown whole, not "owner/repo"
    pattern = values["jupyterhub_link_pattern"]
    assert pattern.startswith("```text\n") and pattern.rstrip().endswith("```")
    assert launch.jupyterhub_link("https://HUB", config_url(), "main", "notebooks/NOTEBOOK.ipynb") in pattern
    page = (REPO / "book" / "reproducing.md").read_text()
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", page))
    assert {"repository_url", "jupyterhub_link_pattern", "binder_link"} <= used <= set(values)
    assert "configured in _config.yml" not in page and "jupyterhub_url" in page
    teaching = (REPO / "book" / "teaching.md").read_text()          # the instructors' hub instructions
    assert {"repository_url", "pip_install"} <= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", teaching)) <= set(values)
    assert f'pip install "lrpkit[book] @ git+{config_url()}"' in values["pip_install"]
    assert "_config.yml" not in teaching

    class Config:                                        # what Sphinx hands a config-inited handler
        html_theme_options = options
        myst_substitutions = {"other": "kept"}

    config_object = Config()
    launch.add_substitutions(None, config_object)
    assert config_object.myst_substitutions == {"other": "kept", **values}


# --------------------------------------------------------------------------------------------------
# licences and citation


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def citation(root: Path = REPO) -> dict:
    return yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))


def test_licence_file_is_the_mit_licence_that_pyproject_declares():
    lines = (REPO / "LICENSE").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "MIT License" and pyproject()["license"] == "MIT"
    assert lines[2] == "Copyright (c) 2022–2026 lrpkit contributors"
    assert "Permission is hereby granted, free of charge" in lines[4]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    licence = readme[readme.index("\n## Licence\n"):]
    assert "MIT" in licence and "CC BY 4.0" in licence and "\n## " not in licence[2:]     # the last section
    page = (REPO / "book" / "reproducing.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in page and "MIT" in page


CFFCONVERT = REPO / ".venv" / "tools" / "cffconvert" / "bin" / "cffconvert"


def cffconvert_validate(path: Path) -> subprocess.CompletedProcess:
    if not CFFCONVERT.is_file():
        pytest.fail(f"{CFFCONVERT.relative_to(REPO)} is missing: make setup installs it (after "
                    "rm .venv/.installed-stamp), or python3 -m venv .venv/tools/cffconvert && "
                    ".venv/tools/cffconvert/bin/pip install cffconvert==2.0.0")
    return subprocess.run([str(CFFCONVERT), "--validate", "-i", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_citation_cff_is_valid_by_cffconvert(tmp_path):
    result = cffconvert_validate(REPO / "CITATION.cff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Citation metadata are valid according to schema version 1.2.0." in result.stdout
    broken = tmp_path / "CITATION.cff"                   # the check can fail
    broken.write_text((REPO / "CITATION.cff").read_text(encoding="utf-8").replace("type: thesis", "type: theses"),
                      encoding="utf-8")
    assert cffconvert_validate(broken).returncode != 0


def test_citation_names_this_version_repository_and_the_thesis():
    cff = citation()
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == pyproject()["version"]
    assert cff["repository-code"] == config_url()
    assert cff["license"] == pyproject()["license"]
    (thesis,) = [r for r in cff["references"] if r["type"] == "thesis"]
    assert thesis["thesis-type"] == "Master's thesis" and thesis["year"] == 2022
    assert thesis["title"] == "In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation"
    assert thesis["authors"] == [{"family-names": "Bermúdez Schettino", "given-names": "Raphael"}]
    assert thesis["institution"]["name"] == "Technische Universität Berlin"


# --------------------------------------------------------------------------------------------------
# the page footer


def test_footer_names_lrpkit_version_commit_date_and_licences(monkeypatch):
    from lrpkit.provenance import git_commit, lrpkit_version

    footer = load_extension("lrpkit_footer")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796515200")        # 2026-12-06 00:00 UTC
    existing = "Every figure is regenerated; see <the box>."

    class Config:                                        # what Sphinx hands a config-inited handler
        html_theme_options = {"extra_footer": existing, "repository_url": config_url()}

    config = Config()
    footer.add_footer(None, config)
    text = config.html_theme_options["extra_footer"]
    commit = git_commit()
    short = commit if commit == "unknown" else commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    assert f"lrpkit {lrpkit_version()}, commit {short} (built 2026-12-06)" in text
    assert "Every figure is regenerated; see &lt;the box&gt;." in text            # kept, escaped
    assert "CC BY 4.0</a>" in text and "code <a" in text and "MIT</a>" in text
    assert config.html_theme_options["repository_url"] == config_url()

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert footer.footer_line("0.1.0", sha + "-dirty", "2026-12-06") == (
        "lrpkit 0.1.0, commit 0123456789ab-dirty (built 2026-12-06)")
    assert footer.footer_line("0.1.0", "unknown", "2026-12-06").endswith("commit unknown (built 2026-12-06)")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", footer.build_date())


def test_footer_extension_is_registered_beside_the_others():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    local = config["sphinx"]["local_extensions"]
    assert local["lrpkit_footer"] == "book/_ext" and (REPO / "book" / "_ext" / "lrpkit_footer.py").is_file()
    assert {"lrpkit_launch", "lrpkit_alt", "lrpkit_plotly", "lrpkit_downloads"} <= set(local)
    assert config["html"]["extra_footer"]                 # the theme option the extension extends


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
