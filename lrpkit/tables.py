"""Tables as the book shows them: the rules of composites, and any DataFrame as HTML.

The notebooks build their tables from the objects they compute with (:func:`composite_table` from
the very composites a figure explains with) and glue them through :func:`html_table`, so that every
table of the book has one look: HTML, no index unless asked, left-aligned headers.
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["composite_table", "html_table", "MAXPOOL_NAMES"]

#: How :func:`composite_table` names a composite's max-pool treatment (backward pass).
MAXPOOL_NAMES = {"max": "winner takes all", "avg": "as 2×2 average"}


#: A thesis-code composite's denominator by its stabilizer (lrpkit's own heuristics keep their names):
#: "vanilla" names lrpkit's plain division only, never the code's unsigned z + 1e-6.
DENOMINATOR_NAMES = {"shift": "thesis code's shift, z + 1e-6 (unsigned)",
                     "zennit": "thesis code's zennit stabilizer, z ± 1e-6 (signed)"}


def composite_table(composites: Sequence[Any]):
    """The rules of one or more composites as one table, with the options that also decide
    their heatmaps.

    Parameters
    ----------
    composites : sequence of lrpkit.composites.Composite
        The very objects a notebook explains with, so that the table cannot differ from them.

    Returns
    -------
    pandas.DataFrame
        :meth:`Composite.table` of each (``Layer index``, ``Rule``, ``Hyperparameters``), preceded
        by a ``Composite`` column when there are several, and followed by ``Denominator``
        (the heuristic of thesis §2.1.5) and ``Max-pooling`` (how relevance passes a max-pool).
    """
    import pandas as pd

    composites = list(composites)
    if not composites:
        raise ValueError("composite_table(composites=[]): pass at least one composite")
    frames = []
    for c in composites:
        frame = c.table()
        if len(composites) > 1:
            frame.insert(0, "Composite", c.name)
        frame["Denominator"] = DENOMINATOR_NAMES[c.forward] if c.forward else c.heuristic
        frame["Max-pooling"] = MAXPOOL_NAMES.get(c.maxpool, c.maxpool)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def html_table(frame: Any, float_format: str | None = None, *, index: bool = False, escape: bool = True) -> Any:
    """A pandas DataFrame as the book shows tables: HTML, left-aligned headers, no index unless asked.

    Parameters
    ----------
    frame : pandas.DataFrame
    float_format : str, optional
        A format spec for floats, e.g. ``".4g"``.
    index : bool
        Show the index (a table whose rows are named by it).
    escape : bool
        Escape HTML in the cells; False for cells that hold markup of their own (``<br>``).

    Returns
    -------
    IPython.display.HTML
        For ``glue``. A table wider than the page scrolls inside its own box instead of widening
        the page.
    """
    from IPython.display import HTML

    formatter = None if float_format is None else ("{:" + float_format + "}").format
    table = frame.to_html(index=index, escape=escape, classes="table", justify="left", float_format=formatter)
    return HTML(f'<div class="lrpkit-table" style="overflow-x: auto; max-width: 100%">{table}</div>')
