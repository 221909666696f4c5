"""Set the book's repository address in its one place, and carry it to the notebooks.

The address lives in ``_config.yml`` (``repository.url``): the launch buttons (Colab, Binder,
JupyterHub), the repository button and the reproducing page read it from there when the book is
built. The notebooks' Colab install cell (``%pip install "lrpkit... @ git+<address>"``) runs in
Colab from the repository itself, so it must hold the address literally, and so must
``CITATION.cff`` (``repository-code``) and the autograders' requirement (``lrpkit/teaching/autograder.py``,
what a grading machine installs); this script rewrites it in every notebook of ``notebooks/``, in
``CITATION.cff`` and in the autograder together with ``_config.yml``, and
``tests/test_publishing.py`` fails while they disagree.

    python scripts/set-repository-url.py https://github.com/OWNER/REPO

Every file is checked before any is written; each is written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ADDRESS = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
CONFIG_LINE = re.compile(r"^(?P<indent>\s+)url:\s*(?P<url>\S+)\s*$", re.M)
CITATION_LINE = re.compile(r"^repository-code:\s*(?P<quote>\"?)(?P<url>[^\"\s]+)(?P=quote)\s*$", re.M)


def current(root: Path) -> str:
    """The address ``_config.yml`` holds now."""
    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def plan(root: Path, new: str) -> dict[Path, str]:
    """The new text of every file that changes (nothing written)."""
    if not ADDRESS.fullmatch(new):
        raise ValueError(f"repository address {new!r} is not of the form https://github.com/OWNER/REPO")
    old = current(root)
    config = (root / "_config.yml").read_text(encoding="utf-8")
    lines = [m for m in CONFIG_LINE.finditer(config) if m["url"] == old]
    if len(lines) != 1:
        raise ValueError(f"_config.yml: expected one 'url: {old}' line under 'repository:', found {len(lines)}")
    changed = {root / "_config.yml": config[:lines[0].start("url")] + new + config[lines[0].end("url"):]}
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        text = notebook.read_text(encoding="utf-8")
        if f"git+{old}" not in text:
            raise ValueError(f"{notebook.relative_to(root)}: its install cell does not name git+{old}; "
                             "fix it by hand first")
        changed[notebook] = text.replace(f"git+{old}", f"git+{new}")
    autograder = root / "lrpkit" / "teaching" / "autograder.py"
    text = autograder.read_text(encoding="utf-8")
    if text.count(f"git+{old}") != 1:
        raise ValueError(f"{autograder.relative_to(root)}: expected one git+{old} (REQUIREMENT); fix it by hand first")
    changed[autograder] = text.replace(f"git+{old}", f"git+{new}")
    citation = (root / "CITATION.cff").read_text(encoding="utf-8")
    lines = [m for m in CITATION_LINE.finditer(citation) if m["url"] == old]
    if len(lines) != 1:
        raise ValueError(f"CITATION.cff: expected one 'repository-code: \"{old}\"' line, found {len(lines)}; "
                         "fix it by hand first")
    changed[root / "CITATION.cff"] = citation[:lines[0].start("url")] + new + citation[lines[0].end("url"):]
    return changed


def write(changed: dict[Path, str]) -> None:
    for path, text in changed.items():
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="https://github.com/OWNER/REPO")
    parser.add_argument("--root", default=str(ROOT), help="the book's root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        changed = plan(Path(args.root), args.url)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write(changed)
    print(f"repository address set to {args.url} in {len(changed)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
