"""``python -m lrpkit.book``: the command line of the book build (``build`` and ``list``)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .pipeline import build
from .errors import BuildError
from .pages import weights_note
from .registry import load_registry

__all__ = ["parser", "main"]


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lrpkit.book``."""
    command = argparse.ArgumentParser(
        prog="python -m lrpkit.book",
        description="Build the companion book: run the figure notebooks, then Jupyter Book.")
    sub = command.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the figure registry and build _build/html")
    b.add_argument("--profile", default="auto", help="smoke, quick, full, or auto (default: "
                   "full when CUDA is present, else quick)")
    b.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    b.add_argument("--weights", default="auto",
                   help="auto (default: pretrained if available, else random with a banner), "
                   "imagenet, random, or a path to a state dict")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--chapter", action="append", default=[],
                   help="re-run only this chapter's figures (e.g. what-lrp-sees); repeatable")
    b.add_argument("--figure", action="append", default=[],
                   help="re-run only this figure id (e.g. fig-2-2); repeatable")
    b.add_argument("--force", action="store_true", help="re-execute even if nothing changed")
    b.add_argument("--timeout", type=float, default=None, help="seconds per notebook cell")
    b.add_argument("--root", default=".", help="book root (holds _config.yml); default: .")
    b.add_argument("--no-html", action="store_true", help="run the notebooks only")
    b.add_argument("--results", action="append", default=[], metavar="EXPERIMENT=DIR",
                   help="take the results directory DIR, made elsewhere with `lrpkit experiment run` and "
                   "`merge` (e.g. on a cluster), for experiment EXPERIMENT instead of running it; it must match "
                   "the experiment this build would run; repeatable")
    sub.add_parser("list", help="list the registry's figures").add_argument("--root", default=".")
    return command


def _results(values: Sequence[str]) -> dict[str, str]:
    """``--results EXPERIMENT=DIR`` options as a mapping; ValueError naming a malformed one."""
    results: dict[str, str] = {}
    for value in values:
        experiment, sep, folder = value.partition("=")
        if not sep or not experiment or not folder:
            raise ValueError(f"--results {value!r}: use EXPERIMENT=DIR (e.g. grid-tutorial=results/tutorial)")
        if experiment in results:
            raise ValueError(f"--results: experiment {experiment!r} given twice")
        results[experiment] = folder
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m lrpkit.book`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parser().parse_args(argv)
    try:
        if args.command == "list":
            for f in load_registry(args.root):
                print(f"{f.id:12s} {str(f.notebook):50s} {f.chapter:28s} "
                      f"{'GPU for full' if f.gpu else 'CPU ok':12s} {f.title}")
            return 0
        summary = build(args.root, profile=args.profile, device=args.device,
                        weights=args.weights, seed=args.seed, chapters=args.chapter,
                        figures=args.figure, force=args.force, timeout=args.timeout,
                        html=not args.no_html, results=_results(args.results))
    except (BuildError, ValueError, FileNotFoundError) as exc:
        print(f"book build failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("book build interrupted: finished notebooks and experiment results are kept; the next build "
              "continues an interrupted experiment", file=sys.stderr)
        return 130
    print(f"profile {summary['profile']} on {summary['device']}, weights={summary['weights']}: "
          f"{len(summary['executed'])} notebook(s) executed, {len(summary['cached'])} unchanged; "
          f"{summary['total_seconds']:.1f} s")
    if summary["experiments"]:
        ran = [e["experiment"] for e in summary["experiments"] if e["status"] == "ran"]
        taken = [e["experiment"] for e in summary["experiments"] if e["status"] == "imported"]
        print(f"experiments: {len(ran)} run ({', '.join(ran) or 'none'}), "
              + (f"{len(taken)} imported ({', '.join(taken)}), " if taken else "")
              + f"{len(summary['experiments']) - len(ran) - len(taken)} reused")
    note = weights_note(summary["network_figures"], summary["random_weights"])
    if note:
        print(note)
    if "index" in summary:
        print(f"book: {summary['index']}")
    return 0
