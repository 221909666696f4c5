"""Student versions of the chapter's notebooks: the solution cells removed, outputs cleared."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["student_notebook", "student_version"]


def student_notebook(source, target, *, force: bool = False) -> Path:
    """Write the student's version of a chapter notebook: the cells tagged ``solution`` removed,
    outputs cleared. ``target`` is a file or an existing folder (the file keeps its name).

    The notebook is read and checked before anything is written; the file is written under a
    temporary name in the target's folder and renamed when complete, and an existing file is
    replaced only with ``force=True``.

    Raises
    ------
    FileNotFoundError, ValueError, FileExistsError
        No such notebook or folder; not a notebook of the chapter (no solution cells) or the target
        is the source; the target exists and ``force`` is False.
    """
    nb, target = student_version(source, target, force)
    import nbformat

    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            nbformat.write(nb, out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def student_version(source, target, force: bool):
    """The student version of ``source`` (an nbformat notebook) and the path it goes to, after every check
    of :func:`student_notebook` (nothing written)."""
    import nbformat

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"notebook {str(source)!r} not found")
    if target.is_dir():
        target = target / source.name
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {str(target.parent)!r} does not exist; create it first")
    if target.resolve() == source.resolve():
        raise ValueError(f"the student version would overwrite its source {str(source)!r}; choose another folder")
    nb = nbformat.read(source, as_version=4)
    kept = [c for c in nb.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    if len(kept) == len(nb.cells):
        raise ValueError(f"{str(source)!r} has no cell tagged 'solution'; student versions are made from the "
                         "notebooks of the chapter 'Implement LRP yourself' (notebooks/implement-lrp-*.ipynb)")
    if target.exists() and not force:
        raise FileExistsError(f"{str(target)!r} exists; pass --force to replace it")
    nb.cells = kept
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb, target
