"""The ``lrpkit`` command line.

::

    lrpkit data fetch [SET ...] [--mirror DIR]      # fetch and checksum the book's images
    lrpkit data list                                 # the named image sets
    lrpkit data path SET                             # paths of a set's images (fetched if needed)
    lrpkit weights [--arch vgg16]                    # where the pretrained weights go
    lrpkit explain IMAGE ... --composite tutorial --gamma .25 --epsilon .25 --out DIR [--force]
    lrpkit pf IMAGE ... --order morf --mode inpainting --patch-size 8 --out DIR [--force]
    lrpkit experiment run|status|merge|report CONFIG_OR_DIR   # the grid experiment (lrpkit.experiment)

Every subcommand has ``--help``. Errors print one line on stderr and exit with status 1 (2 for a
wrong command line, 130 when interrupted); set ``LRPKIT_DEBUG=1`` to see the traceback instead.
An option that the chosen composite or schedule would ignore (``--gammas`` with the tutorial
composite, ``--steps`` with the thesis schedule, ...) is a wrong command line.

Output files
------------
``explain`` and ``pf`` check everything before they load the model or write anything: the
options, the images, the ``--out`` folder (a folder, or creatable, and writable) and every output
name. An output that would replace an input image is refused, and so, without ``--force``, is one
that exists. Every file is written under a temporary name in its final folder
(``.<name>.<random>.part``) and all of a run's files get their final names only when the run is
complete; a failed or interrupted run (Ctrl-C) removes its temporary files and leaves earlier
results untouched. Without ``--force`` a final name is taken by a hard link, which fails if the
name appeared meanwhile (another run into the same ``--out``): this run's file then keeps the
first free name ``<stem>.<n><suffix>``, the message says where, and the exit status is 1. With
``--force`` existing files are replaced atomically.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from .commands import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, one_line
from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrpkit`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    debug = os.environ.get("LRPKIT_DEBUG", "").strip() not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(one_line(err), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as err:  # --help, --version
        return err.code if isinstance(err.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("lrpkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as err:
        if debug:
            raise
        text = _os_message(err) if isinstance(err, OSError) else str(err)
        print(f"lrpkit: error: {one_line(text)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if debug:
            raise
        print(f"lrpkit: internal error: {type(err).__name__}: {one_line(err)} "
              "(set LRPKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR


def _os_message(err: OSError) -> str:
    """One line for an OSError: the problem and the path, without the errno ("[Errno 17]")."""
    if err.errno is None or not err.strerror:  # lrpkit's own message
        return str(err)
    problem = err.strerror[:1].lower() + err.strerror[1:]
    if err.filename is None:
        return problem
    where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
    return f"{problem}: {where}"
