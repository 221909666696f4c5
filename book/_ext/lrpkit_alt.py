"""Sphinx extension of the companion book: alt text for the figures that notebooks glue.

myst-nb gives an image pasted from a notebook's output its file path as alt text, which tells a
reader using a screen reader nothing. Every figure of the book's prose pages is followed by its
caption, an italic paragraph ("*Figure 2.3 (rebuilt, …): …*"), or, on an executed notebook's page, by
the markdown that explains it. This extension gives each such image the text of the paragraph that
follows it (up to 400 characters); an image with no paragraph after it gets "Figure made by this
page's notebook" and the page's title.
"""
from __future__ import annotations

from docutils import nodes

MAX_ALT = 400


def _following_text(node: nodes.Node) -> str | None:
    """The text of the first paragraph after ``node`` or after one of its ancestors, in document order."""
    while node.parent is not None:
        parent = node.parent
        siblings = parent.children[parent.index(node) + 1:]
        for sibling in siblings:
            paragraph = sibling if isinstance(sibling, nodes.paragraph) else next(
                iter(sibling.findall(nodes.paragraph)), None) if isinstance(sibling, nodes.Element) else None
            if paragraph is not None and paragraph.astext().strip():
                return " ".join(paragraph.astext().split())
        if isinstance(parent, nodes.section):
            return None
        node = parent
    return None


def _alt_text(app, doctree, docname) -> None:
    title = next(iter(doctree.findall(nodes.title)), None)
    for image in doctree.findall(nodes.image):
        uri, alt = image.get("uri", ""), image.get("alt", "")
        if alt and alt != uri and not alt.endswith((".png", ".svg", ".jpg")):
            continue
        text = _following_text(image) or ("Figure made by this page's notebook"
                                          + (f": {title.astext()}" if title is not None else ""))
        image["alt"] = text if len(text) <= MAX_ALT else text[:MAX_ALT - 1].rstrip() + "…"


def setup(app):
    app.connect("doctree-resolved", _alt_text)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
