"""Output files that never cost a user a file: checked before any work, written under temporary
names beside their final names, and published together when the work is complete.

:func:`check_outputs` refuses, before anything runs, an output that would replace an input, one
that is a folder and, without ``force``, one that exists. :class:`Outputs` writes each file as
``.<name>.<random>.part`` in its final folder and gives all of them their final names at the end
(:meth:`Outputs.publish`); leaving it by an exception (Ctrl-C included) deletes what it wrote.
Without ``force`` a final name is taken by a hard link, which fails if the name appeared meanwhile
(another run into the same folder): the file then keeps the first free name ``<stem>.<n><suffix>``
(:func:`link_free`). The messages speak of ``--out`` and ``--force``: the command line
(:mod:`lrpkit.cli`) is where these files are written.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
from pathlib import Path
from typing import IO, Sequence

__all__ = ["Outputs", "link_free", "check_out", "check_outputs"]


class Outputs:
    """The files of one run: written under temporary names beside their final names, published
    together when the run is complete (see the module docstring).

    Use as a context manager: leaving it by an exception (Ctrl-C included) deletes the temporary
    files of everything not yet published.
    """

    def __init__(self, force: bool):
        self.force = force
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, *exc) -> None:
        for temporary, _ in self._pending:
            with contextlib.suppress(OSError):
                temporary.unlink()
        self._pending.clear()

    def open(self, final: Path, mode: str = "wb", **kwargs) -> IO:
        """A new temporary file in ``final``'s folder (mode 0666 less the umask, as ``open``)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        while True:
            temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        self._pending.append((temporary, final))
        return os.fdopen(fd, mode, **kwargs)

    def publish(self) -> list[tuple[Path, Path]]:
        """Give every file its final name; returns ``(final, where)`` of the files that had to
        take another name because the final one appeared meanwhile."""
        moved = []
        while self._pending:
            temporary, final = self._pending[0]
            if self.force:
                os.replace(temporary, final)
                where = final
            else:
                where = link_free(temporary, final)
                temporary.unlink(missing_ok=True)
            self._pending.pop(0)
            if where != final:
                moved.append((final, where))
        return moved


def link_free(source: Path, final: Path) -> Path:
    """Give ``source`` the name ``final``, or the first free ``<stem>.<n><suffix>``, never
    replacing a file: a hard link fails if the name exists. Where hard links are not supported,
    the name is reserved by an exclusive create and the file moved over the reservation."""
    names = itertools.chain([final], (final.with_name(f"{final.stem}.{n}{final.suffix}")
                                      for n in itertools.count(1)))
    for name in names:
        try:
            os.link(source, name)
            return name
        except FileExistsError:
            continue
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                                 errno.ENOSYS):
                raise
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        os.replace(source, name)
        return name
    raise AssertionError("unreachable")


def check_out(out: Path) -> None:
    """``--out`` is a writable folder, or one that can be created (nothing is created here)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out} is not writable (permission denied); choose another --out")
        return
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out} cannot be created: {parent} is a file, not a folder; "
                         "choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be created: no permission to write in {parent}; "
                         "choose another --out")


def check_outputs(out: Path, finals: Sequence[Path], inputs: Sequence[Path], force: bool) -> None:
    """Refuse, before any work: an output that is an input (even with ``--force``), one that is
    not a file, and without ``force`` one that exists."""
    check_out(out)
    existing = []
    for final in finals:
        if not (final.exists() or final.is_symlink()):
            continue
        for image in inputs:
            with contextlib.suppress(OSError):
                if os.path.samefile(final, image):
                    raise ValueError(f"output {final} is the input image {image}: writing it "
                                     "would replace the image; choose another --out")
        if final.is_dir():
            raise ValueError(f"{final} exists and is a folder; move it or choose another --out")
        existing.append(final)
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]}{more} exist{'s' if len(existing) == 1 else ''} already; "
                         "pass --force to replace, or choose another --out")
