"""Sphinx extension of the companion book: download links of the provenance boxes, relative to the page.

A figure's provenance box (:meth:`lrpkit.provenance.Provenance.attach`) links its data files and its
executed notebook as ``lrpkit-root:figure-data/<figure id>/<file>``: the same glued box shows on the
chapter page and on the executed notebook's page, at different depths of the site. This extension
rewrites the prefix to the page's path to the site's root, where the build put the files
(``html_extra_path``, :mod:`lrpkit.book.downloads`).
"""
from __future__ import annotations

PREFIX = "lrpkit-root:"


def relative_root(pagename: str) -> str:
    """The path from a page of the html builder to the site's root: ``""``, ``"../"``, ..."""
    return "../" * pagename.count("/")


def rewrite_links(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and PREFIX in body:
        context["body"] = body.replace(PREFIX, relative_root(pagename))


def setup(app):
    app.connect("html-page-context", rewrite_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
