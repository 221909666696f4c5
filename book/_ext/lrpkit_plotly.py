"""Sphinx extension of the companion book: Plotly's script, shipped with the site, on the pages that need it.

The grid explorers (:mod:`lrpkit.explorer`) are Plotly figures glued as HTML without their script, so
that a page works offline and two explorers do not carry the 4 MB library twice. This extension copies
``plotly.min.js`` from the installed plotly package into the site's ``_static`` and adds it to every
page whose body holds an explorer, before the page's own scripts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

SCRIPT = "plotly.min.js"
#: The class of an explorer's element (:data:`lrpkit.explorer.CSS_CLASS`).
MARKER = "lrpkit-explorer"


def plotly_script() -> Path:
    """The minified plotly.js that the installed plotly package ships."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / SCRIPT


def add_script(app, pagename, templatename, context, doctree):
    if MARKER in (context.get("body") or ""):
        app.add_js_file(SCRIPT, priority=200)


def copy_script(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_script(), static / SCRIPT)


def setup(app):
    app.connect("html-page-context", add_script)
    app.connect("build-finished", copy_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
