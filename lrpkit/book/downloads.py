"""The site's downloads: each figure's data files and its executed notebook, under ``figure-data/<id>/``.

A figure notebook writes the data it plots into its cache entry (:mod:`lrpkit.figure_data`; the build
points its kernel there), so a cached figure keeps its files. :func:`publish` copies them, with the
executed notebook, to ``_build/downloads/figure-data/<figure id>/``, which Sphinx copies to the root
of the site (``html_extra_path`` in ``_config.yml``); the provenance box links to them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..figure_data import SITE_FOLDER

__all__ = ["DATA", "FOLDER", "publish"]

#: The folder of a figure's cache entry that its notebook writes its data files to.
DATA = "data"
#: Where the build collects the downloads, relative to the book's root (``html_extra_path``).
FOLDER = Path("_build") / "downloads"


def publish(root: Path, figure: str, entry_folder: Path, notebook: Path) -> Path:
    """Copy a figure's data files (``entry_folder/data``) and its executed ``notebook`` to the
    site's downloads; an earlier copy is replaced whole. Returns the figure's download folder."""
    target = root / FOLDER / SITE_FOLDER / figure
    partial = target.with_name(f".{figure}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    if (entry_folder / DATA).is_dir():
        shutil.copytree(entry_folder / DATA, partial)
    else:
        partial.mkdir(parents=True)
    shutil.copyfile(notebook, partial / f"{figure}.ipynb")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
