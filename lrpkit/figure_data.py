"""The data behind a figure, saved so that a reader can download it from the figure's provenance box.

A figure notebook attaches what it plots to its provenance (:meth:`lrpkit.provenance.Provenance.attach`):
a table becomes a CSV file, arrays an NPZ file. The book build (:mod:`lrpkit.book.execution`) tells each
notebook's kernel where its files go and which figure it is (:data:`FOLDER_ENV`, :data:`FIGURE_ENV`) and
publishes them with the executed notebook under ``figure-data/<figure id>/`` of the site
(:mod:`lrpkit.book.downloads`). A notebook run outside the build writes nothing unless it is given a
folder: a user's folders are not written to unasked.

Each file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Mapping

__all__ = ["FOLDER_ENV", "FIGURE_ENV", "SITE_FOLDER", "save", "site_path"]

#: Environment variable naming the folder a figure's data files are written to (set by the book build).
FOLDER_ENV = "LRPKIT_FIGURE_DATA"
#: Environment variable naming the figure (its id in ``notebooks/figures.yml``; set by the book build).
FIGURE_ENV = "LRPKIT_FIGURE_ID"
#: The site's folder of downloads: ``figure-data/<figure id>/<file>``.
SITE_FOLDER = "figure-data"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def save(name: str, data: Any, folder: Path | str) -> Path:
    """Write ``data`` to ``folder`` as ``<name>.csv`` (a pandas DataFrame or Series) or ``<name>.npz``
    (an array, a tensor, or a mapping of names to arrays or tensors); return the file's path.

    Raises
    ------
    ValueError
        ``name`` is not lower-case letters, digits, ``-`` and ``_``; ``data`` is of another kind.
    """
    import numpy as np
    import pandas as pd

    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"figure data name {name!r}: use lower-case letters, digits, '-' and '_'")
    if isinstance(data, (pd.DataFrame, pd.Series)):
        filename = f"{name}.csv"
        content = data.to_csv(index=isinstance(data, pd.Series) or not _plain_index(data)).encode()
    else:
        arrays = data if isinstance(data, Mapping) else {name: data}
        try:
            arrays = {str(k): _array(v) for k, v in arrays.items()}
        except TypeError as err:
            raise ValueError(f"figure data {name!r}: {err}") from None
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        filename, content = f"{name}.npz", buffer.getvalue()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, temporary = folder / filename, folder / f".{filename}.partial"
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def site_path(figure: str, filename: str) -> str:
    """Where the site serves a figure's file, relative to the site's root."""
    return f"{SITE_FOLDER}/{figure}/{filename}"


def _plain_index(frame: Any) -> bool:
    """Whether a DataFrame's index is 0, 1, 2, ... (not worth a column)."""
    import pandas as pd

    return isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1


def _array(value: Any):
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"{type(value).__name__} is not an array, a tensor or a pandas table")
    return array
