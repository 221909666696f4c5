"""The prose pages of the book: their glue references, checked against the executed notebooks,
the table of contents, and Jupyter Book.

A prose page pastes figures and numbers from executed notebooks with myst-nb ``glue`` (a directive
with ``:doc:``, or a role ``{glue:text}`doc::key:format```). :func:`check_glue` fails the build,
naming ``page:line``, when a key a page asks for is not in the notebook it names. Then
:func:`jupyter_book` renders the site with ``-W -n --keep-going`` (``execute_notebooks: "off"``),
so that any Sphinx warning fails the build too.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..provenance import provenance_record
from .errors import BuildError
from .registry import Figure

__all__ = ["glue_keys", "glue_references", "check_glue", "toc_pages", "jupyter_book", "weights_by_figure",
           "weights_note"]


def glue_keys(notebook: Path) -> dict[str, dict[str, Any]]:
    """The glue keys an executed notebook provides: key -> output (mime bundle)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    keys = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                keys[meta["name"]] = output
    return keys


_DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{glue(?::[a-z]+)?\}\s*(?P<key>\S+)\s*$")
_DOC_OPTION = re.compile(r"^:doc:\s*(?P<doc>\S+)\s*$")
_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`(?P<body>[^`]+)`")


def glue_references(page: Path) -> list[tuple[int, str | None, str]]:
    """(line, doc or None, key) for every ``glue`` directive and role on a MyST page."""
    refs = []
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        match = _DIRECTIVE.match(line.strip())
        if match:
            doc = None
            for option in lines[number:number + 5]:
                found = _DOC_OPTION.match(option.strip())
                if found:
                    doc = found["doc"]
                    break
                if not option.strip().startswith(":"):
                    break
            refs.append((number, doc, match["key"]))
            continue
        for role in _ROLE.finditer(line):
            body = role["body"]
            doc, _, key = body.rpartition("::")
            refs.append((number, doc or None, key.split(":", 1)[0]))
    return refs


def check_glue(root: Path, pages: Sequence[Path]) -> None:
    """Every glue key a page pastes must exist in the executed notebook it names.

    Raises
    ------
    BuildError
        Naming the page, line, key and notebook (and the keys that notebook does provide).
    """
    problems, keys_of = [], {}
    for page in pages:
        for line, doc, key in glue_references(page):
            rel = page.relative_to(root)
            if doc is None:
                problems.append(f"{rel}:{line}: glue key {key!r} has no :doc: (a prose page "
                                "pastes from an executed notebook: add ':doc: <notebook>')")
                continue
            notebook = (page.parent / doc).resolve()
            if not notebook.is_file():
                problems.append(f"{rel}:{line}: glue key {key!r}: notebook {doc} was not built "
                                "(is its figure in notebooks/figures.yml with this chapter?)")
                continue
            if notebook not in keys_of:
                keys_of[notebook] = glue_keys(notebook)
            keys = keys_of[notebook]
            if key not in keys:
                problems.append(f"{rel}:{line}: missing glue key {key!r}: "
                                f"{notebook.relative_to(root)} provides {sorted(keys)}")
    if problems:
        raise BuildError("missing glue keys:\n  " + "\n  ".join(problems))


def toc_pages(root: Path) -> list[Path]:
    """The MyST/notebook files named in ``_toc.yml`` (globs expanded)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[Path] = []

    def add(entry: Mapping[str, Any]) -> None:
        if "file" in entry:
            stem = root / entry["file"]
            for suffix in ("", ".md", ".ipynb"):
                candidate = stem.with_name(stem.name + suffix)
                if candidate.is_file():
                    found.append(candidate)
                    break
        if "glob" in entry:
            found.extend(sorted(p for p in root.glob(entry["glob"])
                                if p.suffix in (".md", ".ipynb")))
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []) or []:
                add(child)

    found.append(next(p for p in (root / f"{toc['root']}.md", root / f"{toc['root']}.ipynb",
                                  root / toc["root"]) if p.is_file()))
    add(toc)
    return found


def jupyter_book(root: Path, fresh: bool, log: Path) -> None:
    """``jupyter-book build <root> -W -n --keep-going``; BuildError naming the warnings."""
    command = [sys.executable, "-c",
               "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(root), "--builder", "html", "-W", "-n", "--keep-going"]
    if fresh:
        command.append("--all")
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=root)
    if proc.returncode != 0:
        # Sphinx saved the environment of pages that warned; forget it so the next build
        # re-reads (and re-reports) them instead of passing silently.
        shutil.rmtree(root / "_build" / ".doctrees", ignore_errors=True)
        text = log.read_text(encoding="utf-8", errors="replace")
        problems = [line for line in text.splitlines()
                    if "WARNING" in line or "ERROR" in line or "Exception" in line]
        detail = "\n  ".join(problems[-20:]) or text[-2000:]
        raise BuildError(f"jupyter-book build failed (exit {proc.returncode}); full log: {log}\n"
                         f"  {detail}")


def weights_by_figure(root: Path, registry: Sequence[Figure]) -> tuple[list[str], list[str]]:
    """(figures that involve a network, those of them made with random weights), read from the
    provenance of every executed notebook of the book (not only those of this run)."""
    network, random = [], []
    for figure in registry:
        path = root / figure.output
        if not path.is_file():
            continue
        output = glue_keys(path).get("provenance")
        record = provenance_record(output) if output is not None else None
        if record and record.get("weights"):
            network.append(figure.id)
            if record.get("random_weights"):
                random.append(figure.id)
    return network, random


def weights_note(network: Sequence[str], random: Sequence[str]) -> str | None:
    """The line of the build summary about random weights, or None when no figure used them."""
    if not random:
        return None
    if set(random) == set(network):
        return (f"RANDOM WEIGHTS: all {len(network)} figure(s) of the book were computed with a "
                "randomly initialized VGG-16 (no pretrained weights were available); every page "
                "says so in a banner")
    return (f"RANDOM WEIGHTS in {len(random)} of the {len(network)} figures with a network: "
            f"{', '.join(random)} (their pages say so in a banner)")
