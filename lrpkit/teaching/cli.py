"""``python -m lrpkit.teaching``: the instructor's commands.

``student NOTEBOOK... --out FOLDER [--force]``
    Student versions of the chapter's notebooks (:func:`lrpkit.teaching.student_notebook`).
``autograder --out FOLDER [--part N ...] [--force]``
    Otter-Grader autograders, one zip per part (:func:`lrpkit.teaching.autograder.write_autograders`).

Errors are one line on stderr with exit status 2; nothing is written unless every target is good.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .autograder import PARTS, write_autograders
from .student import student_notebook, student_version

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lrpkit.teaching``."""
    parser = argparse.ArgumentParser(prog="python -m lrpkit.teaching",
                                     description="Tools for teaching with the chapter 'Implement LRP yourself'.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write student versions of the notebooks (solutions removed)")
    student.add_argument("notebooks", nargs="+", help="notebooks/implement-lrp-*.ipynb")
    student.add_argument("--out", required=True, help="an existing folder for the student versions")
    student.add_argument("--force", action="store_true", help="replace existing files")
    grader = sub.add_parser("autograder", help="write Otter-Grader autograders, one zip per part")
    grader.add_argument("--out", required=True, help="an existing folder for the zips")
    grader.add_argument("--part", type=int, action="append", choices=PARTS,
                        help="a part to write (repeat for several; default: every part)")
    grader.add_argument("--force", action="store_true", help="replace existing zips")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a command (``argv`` defaults to ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "autograder":
            for path in write_autograders(args.out, parts=args.part, force=args.force):
                print(path)
            return 0
        if not Path(args.out).is_dir():
            raise FileNotFoundError(f"--out {args.out!r} is not a folder; create it first")
        for name in args.notebooks:          # check every notebook before writing any
            student_version(name, args.out, args.force)
        for name in args.notebooks:
            print(student_notebook(name, args.out, force=args.force))
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
