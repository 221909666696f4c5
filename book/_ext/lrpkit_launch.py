"""Sphinx extension of the companion book: Colab launch buttons that open the source notebooks.

sphinx-book-theme puts launch buttons on notebook pages only, and points them at the page's own
file. The book's pages are prose (``book/*.md``) and executed notebooks (``book/_generated/``,
not in the repository); what a reader should open in Colab is the *source* notebook in
``notebooks/``, named by the figure registry ``notebooks/figures.yml``. This extension adds, on
every chapter page and executed-notebook page, a launch menu with one Colab link per figure
notebook of that page, built from ``_config.yml``'s ``launch_buttons.colab_url`` and
``repository.url`` / ``repository.branch``.

It also drops repeated inline scripts from a page: sphinx-thebe 0.3.1 under Sphinx 7.4 adds its
``const THEBE_JS_URL = ...`` script twice, a JavaScript error on every page.
"""
from __future__ import annotations

from pathlib import Path

import yaml


def _registry(app) -> dict:
    path = Path(app.confdir) / "notebooks" / "figures.yml"
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("figures") or {}


def _notebooks_for(app, pagename: str) -> list[tuple[str, str]]:
    """(title, source notebook path) of the figures shown on, or made by, this page."""
    found = []
    for fid, entry in _registry(app).items():
        chapter = str(entry.get("chapter", ""))
        generated = f"book/_generated/{Path(chapter).name}/{fid}"
        if pagename in (chapter, generated):
            found.append((str(entry.get("title", fid)), f"notebooks/{entry['notebook']}"))
    return found


def add_colab_buttons(app, pagename, templatename, context, doctree):
    options = app.config["html_theme_options"]
    colab = (options.get("launch_buttons") or {}).get("colab_url", "").strip("/")
    repo_url = options.get("repository_url", "")
    if not colab or "github.com/" not in repo_url:
        return
    notebooks = _notebooks_for(app, pagename)
    if not notebooks or "header_buttons" not in context:
        return
    org, repo = repo_url.rstrip("/").split("github.com/")[-1].split("/")[:2]
    branch = options.get("repository_branch") or "main"
    buttons = [{
        "type": "link",
        "text": f"Colab: {title}",
        "tooltip": f"Open {path} in Google Colab",
        "icon": "_static/images/logo_colab.png",
        "url": f"{colab}/github/{org}/{repo}/blob/{branch}/{path}",
        "label": "colab-launch-button",
    } for title, path in notebooks]
    header = context["header_buttons"]
    # Replace the theme's own launch menu (it points at the executed copy, absent from git).
    header[:] = [b for b in header if b.get("label") != "launch-buttons"]
    header.append({"type": "group", "tooltip": "Run this page's notebooks in Colab",
                   "icon": "fas fa-rocket", "buttons": buttons, "label": "launch-buttons"})


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or "",   # None and "" both mean inline
               tuple(sorted((getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts, priority=502)
    # After the theme's launch and header buttons (priority 501).
    app.connect("html-page-context", add_colab_buttons, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
