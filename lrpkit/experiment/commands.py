"""``lrpkit experiment run|status|merge|report``: the experiment on the command line.

::

    lrpkit experiment run CONFIG [--out DIR] [--shard K/N] [--dry-run]   # run (or continue) an experiment
    lrpkit experiment run DIR                                           # continue DIR with its own config
    lrpkit experiment status CONFIG_OR_DIR [--shards N]                 # done and missing units
    lrpkit experiment merge DIR [DIR ...] [--out DIR]                   # check every unit once, one table
    lrpkit experiment report CONFIG_OR_DIR [--csv FILE]                 # mean AUC range, best settings

:func:`add_parser` registers the subcommand on the ``lrpkit`` parser (:mod:`lrpkit.cli`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser"]


def _shard(text: str):
    from .plan import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _cmd_run(args) -> int:
    from .runner import run

    result = run(args.source, args.out, shard=args.shard, workers=args.workers, estimate=not args.no_estimate,
                 dry_run=args.dry_run, progress=False if args.quiet else None)
    if args.dry_run:
        print("dry run: nothing written")
    else:
        print(f"ran {result.ran} unit(s) in {result.seconds:.1f} s; {result.done_before + result.ran} of "
              f"{result.selected} done{' (this shard)' if args.shard else ''} in {result.out}")
    return 0


def _cmd_status(args) -> int:
    from .runner import status

    for line in status(args.source, args.out).lines(args.shards):
        print(line)
    return 0


def _cmd_merge(args) -> int:
    from .store import merge

    path = merge(args.sources, args.out)
    print(f"every unit present once: {path}")
    return 0


def _cmd_report(args) -> int:
    from .report import mean_auc, report_lines
    from .runner import status
    from .store import ResultsDir, read_results, write_atomic

    folder = status(args.source, args.out).out
    results = read_results(folder, partial=args.partial)
    if results.empty:
        raise ValueError(f"{folder} has no finished unit yet; nothing to report")
    for line in report_lines(results, ResultsDir(folder).read_metadata()):
        print(line)
    if args.csv:
        path = Path(args.csv)
        if path.exists() and not args.force:
            raise FileExistsError(f"{path} exists; pass --force to overwrite it")
        table = mean_auc(results)
        write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
        print(f"mean AUC per setting and order -> {path}")
    return 0


def add_parser(subparsers, parser_class) -> argparse.ArgumentParser:
    """Add ``experiment`` and its actions to the ``lrpkit`` subparsers."""
    ex = subparsers.add_parser(
        "experiment", help="the hyperparameter grid experiment of thesis chapter 4 (resumable, shardable)",
        description="Explain every image of an image set at every setting of a 2-D hyperparameter grid and "
        "grade each heatmap by Pixel-Flipping in every order (thesis section 4.1). The config is a YAML file "
        "(see lrpkit.experiment.config); results go to a directory, one file per image, so that a run can "
        "be interrupted and continued, or split into shards and merged.")
    actions = ex.add_subparsers(dest="experiment_command", metavar="ACTION", parser_class=parser_class)

    ru = actions.add_parser("run", help="run an experiment, or its missing units",
                            description="Check the config, the images and the model, print the work and a time "
                            "estimate, then run every unit (image) whose results file is missing. A results "
                            "directory made with another config is refused, naming the key that differs.")
    ru.add_argument("source", metavar="CONFIG_OR_DIR", help="a config file, or a results directory to continue")
    ru.add_argument("--out", metavar="DIR", help="results directory (default: the config's output key, else "
                    "<config name>-results beside the config)")
    ru.add_argument("--shard", type=_shard, metavar="K/N", help="run only the K-th of N shares of the units "
                    "(every N-th image; e.g. one SLURM array task each), then merge")
    ru.add_argument("--workers", type=_workers, metavar="N", help="inpainting threads (default: lrpkit's; "
                    "the numbers do not depend on it)")
    ru.add_argument("--dry-run", action="store_true", help="check and estimate only; write nothing")
    ru.add_argument("--no-estimate", action="store_true", help="skip the time estimate (and its calibration)")
    ru.add_argument("--quiet", action="store_true", help="no progress bar or per-unit lines")
    ru.set_defaults(func=_cmd_run)

    st = actions.add_parser("status", help="done and missing units of a results directory",
                            description="Print how many units are done, which are missing, and the work left.")
    st.add_argument("source", metavar="CONFIG_OR_DIR")
    st.add_argument("--out", metavar="DIR", help="results directory of a config given as CONFIG")
    st.add_argument("--shards", type=int, metavar="N", help="also say which of N shards have missing units")
    st.set_defaults(func=_cmd_status)

    me = actions.add_parser("merge", help="check that every unit is present once and write results.parquet",
                            description="Merge results directories of one config (e.g. one per shard): every "
                            "unit must be present exactly once; writes OUT/results.parquet.")
    me.add_argument("sources", nargs="+", metavar="DIR")
    me.add_argument("--out", metavar="DIR", help="where results.parquet goes (default: the first DIR)")
    me.set_defaults(func=_cmd_merge)

    re_ = actions.add_parser("report", help="mean AUC range and best setting per order",
                             description="Summarize a results directory: per order the range of the mean AUC "
                             "over the grid and the best setting (MoRF: lowest, LRF: highest).")
    re_.add_argument("source", metavar="CONFIG_OR_DIR")
    re_.add_argument("--out", metavar="DIR", help="results directory of a config given as CONFIG")
    re_.add_argument("--partial", action="store_true", help="report on the finished units of an unfinished run")
    re_.add_argument("--csv", metavar="FILE", help="also write the mean AUC of every setting and order")
    re_.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    re_.set_defaults(func=_cmd_report)

    def missing_action(args) -> int:
        ex.print_help(sys.stderr)
        return 2

    ex.set_defaults(func=missing_action)
    return ex
