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

import argparse
import contextlib
import errno
import itertools
import os
import secrets
import sys
import warnings
from pathlib import Path
from typing import IO, Sequence

from . import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMPOSITES = ("tutorial", "decreasing-gamma", "uniform")
UNIFORM_RULES = ("epsilon", "gamma", "zero")


class _UsageError(Exception):
    """A wrong command line, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _nonneg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _os_message(err: OSError) -> str:
    """One line for an OSError: the problem and the path, without the errno ("[Errno 17]")."""
    if err.errno is None or not err.strerror:  # lrpkit's own message
        return str(err)
    problem = err.strerror[:1].lower() + err.strerror[1:]
    if err.filename is None:
        return problem
    where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
    return f"{problem}: {where}"


# --------------------------------------------------------------------------------------------
# output files


class _Outputs:
    """The files of one run: written under temporary names beside their final names, published
    together when the run is complete (see the module docstring).

    Use as a context manager: leaving it by an exception (Ctrl-C included) deletes the temporary
    files of everything not yet published.
    """

    def __init__(self, force: bool):
        self.force = force
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def __enter__(self) -> "_Outputs":
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
                where = _link_free(temporary, final)
                temporary.unlink(missing_ok=True)
            self._pending.pop(0)
            if where != final:
                moved.append((final, where))
        return moved


def _link_free(source: Path, final: Path) -> Path:
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


def _report_moved(moved: list[tuple[Path, Path]]) -> int:
    for final, where in moved:
        print(f"lrpkit: error: {final} appeared while this run was working (another run into the "
              f"same --out?); it was kept, and this run's file is {where}", file=sys.stderr)
    return EXIT_ERROR if moved else EXIT_OK


def _check_out(out: Path) -> None:
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


def _check_outputs(out: Path, finals: Sequence[Path], inputs: Sequence[Path], force: bool) -> None:
    """Refuse, before any work: an output that is an input (even with ``--force``), one that is
    not a file, and without ``force`` one that exists."""
    _check_out(out)
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


# --------------------------------------------------------------------------------------------
# data


def _cmd_data_fetch(args) -> int:
    from . import data
    paths = data.fetch(args.sets or None, mirror=args.mirror, cache=args.cache, force=args.force,
                       progress=None if not args.quiet else False)
    root = data.cache_dir(args.cache)
    print(f"{len(paths)} images verified (sha256) in {root}")
    return EXIT_OK


def _cmd_data_list(args) -> int:
    from . import data
    for name, files in data.image_sets().items():
        shown = ", ".join(Path(f).name for f in files[:3]) + (", ..." if len(files) > 3 else "")
        print(f"{name}\t{len(files)} image{'s' if len(files) != 1 else ''}\t{shown}")
    return EXIT_OK


def _cmd_data_path(args) -> int:
    from . import data
    for record in data.image_set(args.set, fetch_missing=not args.no_fetch, mirror=args.mirror,
                                 cache=args.cache):
        print(record.path)
    return EXIT_OK


def _cmd_weights(args) -> int:
    from . import models
    file = models.pretrained_file(args.arch)
    if file.is_file():
        digest, prefix, verified = models.check_pretrained(file)
        state = "verified" if verified else (
            f"UNVERIFIED: expected sha256 prefix {prefix}; possibly not the pretrained weights: "
            "delete it and download again, or run with --allow-unverified-weights")
        print(f"{args.arch}: {file} present, sha256 {digest} ({state})")
    else:
        url = models._imagenet_weights(args.arch).url
        print(f"{args.arch}: {file} missing; download {url} and place it there "
              "(or run with network access once)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# explain


_COMPOSITE_OPTIONS = ("gamma", "epsilon", "gammas", "rule", "zbox")


def _check_applicable(args) -> None:
    """Refuse an option that would be ignored: a hyperparameter of another composite or rule,
    ``--steps`` of a schedule without steps, ``--pf-seed`` without anything random."""
    rule = args.rule or "epsilon"
    uses = {"tutorial": {"gamma", "epsilon"}, "decreasing-gamma": {"gammas"},
            "uniform": {"rule", "zbox", rule}}[args.composite]
    for option in _COMPOSITE_OPTIONS:
        if getattr(args, option) is None or option in uses:
            continue
        if option == "gammas":
            why = f"applies to --composite decreasing-gamma only, not {args.composite}"
        elif option in ("rule", "zbox"):
            why = f"applies to --composite uniform only, not {args.composite}"
        elif args.composite == "decreasing-gamma":
            why = ("does not apply to --composite decreasing-gamma (its γ values are --gammas"
                   + (", and it has no ε rule)" if option == "epsilon" else ")"))
        else:
            why = f"does not apply to --composite uniform --rule {rule} (only to --rule {option})"
        raise _UsageError(f"lrpkit {args.command}: --{option.replace('_', '-')} {why} "
                          f"(see lrpkit {args.command} --help)")
    if args.command != "pf":
        return
    if args.steps is not None and args.schedule not in ("log", "linear"):
        which = args.schedule if args.schedule == "thesis" else "an explicit list of counts"
        raise _UsageError(f"lrpkit pf: --steps applies to --schedule log or linear only, not "
                          f"{which} (see lrpkit pf --help)")
    if args.pf_seed is not None and "random" not in (args.order, args.mode):
        raise _UsageError("lrpkit pf: --pf-seed applies to --order random or --mode random only "
                          "(see lrpkit pf --help)")


def _composite(args):
    from . import composites
    common = {"heuristic": args.heuristic, "maxpool": args.maxpool}
    gamma = 0.25 if args.gamma is None else args.gamma
    epsilon = 0.25 if args.epsilon is None else args.epsilon
    if args.composite == "tutorial":
        return composites.tutorial(gamma=gamma, epsilon=epsilon, **common)
    if args.composite == "decreasing-gamma":
        gammas = (0.5, 0.25, 0.1, 0.0) if args.gammas is None else args.gammas
        return composites.decreasing_gamma(gammas=gammas, **common)
    return composites.uniform(args.rule or "epsilon", epsilon=epsilon, gamma=gamma,
                              zbox=bool(args.zbox), **common)


def _check_fits(args, composite) -> None:
    """The composite's layer ranges against ``--arch``, on a model without weights (built on the
    meta device, in a fraction of a second), so that a misfit is refused before the real load."""
    import torch
    import torchvision

    from . import canonical

    with torch.device("meta"):
        shape = getattr(torchvision.models, args.arch)(weights=None)
    try:
        composite.check(len(canonical.layers(shape.eval())))
    except ValueError as err:
        raise ValueError(f"--composite {args.composite} does not fit --arch {args.arch}: {err}") from None


def _output_names(paths: Sequence[Path]) -> list[str]:
    """File stems for the outputs, made unique when two inputs share a name (``castle``,
    ``castle-2``, ...; a number already taken is skipped)."""
    names, taken = [], set()
    for path in paths:
        name, n = path.stem, 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


def _image_paths(args) -> list[Path]:
    from . import data

    images = [Path(p) for p in args.images]
    if args.set:
        images += [r.path for r in data.image_set(args.set, mirror=args.mirror)]
    if not images:
        raise _UsageError(f"lrpkit {args.command}: give at least one IMAGE or --set NAME "
                          f"(see lrpkit {args.command} --help)")
    return images


def _model(args):
    from . import models

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", models.WeightsWarning)
        model = models.vgg(args.arch, args.weights, seed=args.seed, device=args.device,
                           download=False if args.offline else None,
                           allow_unverified=args.allow_unverified_weights)
    for warning in caught:
        print(f"lrpkit: warning: {_one_line(warning.message)}", file=sys.stderr)
    print(f"model: {models.weights_info(model).banner()}")
    return model


def _target(args) -> int | None:
    from . import models
    return None if args.target is None else models.class_index(args.target)


def _cmd_explain(args) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from . import data, diagnostics, lrp, models, plotting

    _check_applicable(args)
    target = _target(args)
    composite = _composite(args)
    _check_fits(args, composite)
    images = _image_paths(args)
    out = Path(args.out)
    names = _output_names(images)
    finals = [out / f"{name}.png" for name in names]
    if args.save_relevance:
        finals += [out / f"{name}.npy" for name in names]
    _check_outputs(out, finals, images, args.force)
    pixels = [data.read_rgb(p, args.size, args.resize) for p in images]
    model = _model(args)
    categories = models.imagenet_categories()
    device = next(model.parameters()).device
    bar = tqdm(list(zip(images, pixels, names)), desc="explain", unit="image",
               disable=True if len(images) == 1 else None)
    with _Outputs(args.force) as outputs:
        for path, rgb, name in bar:
            x = data.normalize(rgb, device)
            explanation = lrp.explain(model, x, target=target, composite=composite)
            logits, relevance = explanation.logits[0], explanation.relevance
            predicted, chosen = int(logits.argmax()), int(explanation.target[0])
            png = out / f"{name}.png"
            with outputs.open(png) as handle:
                plotting.save_heatmap(relevance[0], handle)
            if args.save_relevance:
                with outputs.open(out / f"{name}.npy") as handle:
                    np.save(handle, relevance[0].detach().cpu().numpy())
            tqdm.write(
                f"{path}: predicted {predicted} {categories[predicted]!r} (logit "
                f"{float(logits[predicted]):.4g}); target {chosen} {categories[chosen]!r} (logit "
                f"{float(logits[chosen]):.4g}); relevance sum {float(relevance.sum()):.4g} -> {png}",
                file=sys.stdout)
            if args.check:
                tqdm.write(f"{path}: check: {diagnostics.instability(explanation).verdict(0)}",
                           file=sys.stdout)
        moved = outputs.publish()
    return _report_moved(moved)


#: Column of ``pf-scores.csv`` that says what each row's image is.
STEP_KINDS = ("original", "perturbed", "gray")


def _schedule(text: str):
    from . import pf
    if text in pf.SCHEDULES:
        return text
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--schedule must be thesis, log, linear or comma-separated patch counts, "
                         f"got {text!r}") from None


def _check_pf_settings(args, pixels, schedule) -> None:
    """The ranges :func:`lrpkit.pf.pixel_flipping` checks, for these images, before any work."""
    from . import pf

    height, width = min(p.shape[0] for p in pixels), min(p.shape[1] for p in pixels)
    if not 1 <= args.patch_size <= min(height, width):
        raise ValueError(f"--patch-size must be in [1, {min(height, width)}] for {height}x{width} "
                         f"images, got {args.patch_size}")
    n_patches = -(-height // args.patch_size) * -(-width // args.patch_size)
    try:
        pf.flip_schedule(n_patches, schedule, args.steps)
    except ValueError as err:
        raise ValueError(f"--schedule {args.schedule!r} with --patch-size {args.patch_size}: "
                         f"{err}") from None


def _cmd_pf(args) -> int:
    import csv

    from tqdm.auto import tqdm

    from . import data, lrp, pf

    _check_applicable(args)
    target = _target(args)
    composite = _composite(args)
    _check_fits(args, composite)
    schedule = _schedule(args.schedule)
    images = _image_paths(args)
    out = Path(args.out)
    names = _output_names(images)
    table = out / "pf-scores.csv"
    _check_outputs(out, [table], images, args.force)
    pixels = [data.read_rgb(p, args.size, args.resize) for p in images]
    _check_pf_settings(args, pixels, schedule)
    model = _model(args)
    device = next(model.parameters()).device
    bar = tqdm(list(zip(images, pixels, names)), desc="pixel-flipping", unit="image",
               disable=True if len(images) == 1 else None)
    with _Outputs(args.force) as outputs:
        with outputs.open(table, "w", newline="", encoding="utf-8") as handle:
            rows = csv.writer(handle)
            rows.writerow(["image", "order", "mode", "step", "step_kind", "flips", "fraction_flipped",
                           f"score_{args.score}"])
            for path, rgb, name in bar:
                x = data.normalize(rgb, device)
                explanation = lrp.explain(model, x, target=target, composite=composite)
                result = pf.pixel_flipping(
                    model, x, explanation.relevance, explanation.target, patch_size=args.patch_size,
                    order=args.order, mode=args.mode, schedule=schedule, score=args.score,
                    seed=args.pf_seed or 0, n_steps=args.steps, thesis_compat=args.thesis_compat,
                    progress=False)
                last = len(result.flips_per_step) - 1
                for step, (flips, fraction, value) in enumerate(zip(
                        result.flips_per_step, result.fraction_flipped, result.scores[0].tolist())):
                    kind = STEP_KINDS[0] if step == 0 else STEP_KINDS[2] if step == last else STEP_KINDS[1]
                    rows.writerow([name, args.order, args.mode, step, kind, flips, f"{fraction:.6g}",
                                   f"{value:.8g}"])
                tqdm.write(f"{path}: target {int(result.targets[0])}, {args.order} {args.mode}, "
                           f"{result.scores.shape[1]} scores, AUC {float(result.auc[0]):.6g}",
                           file=sys.stdout)
        moved = outputs.publish()
    print(f"scores -> {moved[0][1] if moved else table}")
    return _report_moved(moved)


# --------------------------------------------------------------------------------------------
# parser


def _add_explanation_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``explain`` and ``pf``: composite, target, model, images."""
    from .data import RESIZE_MODES
    from .models import VGG_ARCHS

    ex = parser
    ex.add_argument("--composite", choices=COMPOSITES, default="tutorial",
                    help="LRP-Tutorial (thesis Table 2.4), Decreasing-gamma (Table 2.3) or one rule "
                    "everywhere (default: tutorial)")
    # defaults of None tell an option given from one left out: one that does not apply is refused
    ex.add_argument("--gamma", type=_nonneg, default=None, help="gamma of the tutorial composite or "
                    "of --composite uniform --rule gamma (default: 0.25)")
    ex.add_argument("--epsilon", type=_nonneg, default=None, help="epsilon of the tutorial "
                    "composite or of --composite uniform --rule epsilon (default: 0.25)")
    ex.add_argument("--gammas", type=_floats, default=None, metavar="G1,G2,G3,G4",
                    help="gammas of the --composite decreasing-gamma blocks (default: 0.5,0.25,0.1,0)")
    ex.add_argument("--rule", choices=UNIFORM_RULES, default=None,
                    help="rule of --composite uniform (default: epsilon)")
    ex.add_argument("--zbox", action="store_true", default=None,
                    help="zᴮ rule in the pixel layer (--composite uniform only)")
    ex.add_argument("--heuristic", choices=("tutorial", "zennit", "vanilla"), default="tutorial",
                    help="denominator stabiliser, thesis section 2.1.5 (default: tutorial)")
    ex.add_argument("--maxpool", choices=("avg", "max"), default="avg", help="max-pool relevance "
                    "as 2x2 average pooling (tutorial) or winner-takes-all (default: avg)")
    ex.add_argument("--target", metavar="CLASS", help="class to explain: index 0-999, torchvision's "
                    "ImageNet name ('tank') or the WordNet name, whole or in part ('tank, army tank') "
                    "(default: the predicted class)")
    ex.add_argument("--arch", choices=VGG_ARCHS, default="vgg16", help="network (default: vgg16)")
    ex.add_argument("--weights", default="auto", metavar="WEIGHTS", help="'imagenet' (torchvision's "
                    "pretrained weights from the torch hub cache, downloaded once), 'random' (seeded), "
                    "'auto' (imagenet if available, else random with a warning) or a state-dict file "
                    "(default: auto)")
    ex.add_argument("--allow-unverified-weights", action="store_true", help="use a cached "
                    "pretrained file whose sha256 does not match torchvision's published one "
                    "(refused by default: it may be damaged or other weights)")
    ex.add_argument("--force", action="store_true", help="replace existing output files (an "
                    "input image is never replaced)")
    ex.add_argument("--seed", type=int, default=0, help="seed of random weights (default: 0)")
    ex.add_argument("--offline", action="store_true", help="never download weights (also: "
                    "LRPKIT_OFFLINE=1)")
    ex.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    ex.add_argument("--size", type=int, default=224, help="side of the square input in pixels, 32 to "
                    "10000: VGG's adaptive pooling takes any of them, as in torchvision; time and memory "
                    "grow with the square of the size (default: 224, the thesis's)")
    ex.add_argument("--resize", choices=RESIZE_MODES, default="auto", help="crop: shorter side to "
                    "size*256/224 (256 for 224), then the centre size x size; exact: stretch; none: must "
                    "already be the size; auto (default): none if the image already has the size, else crop")
    ex.add_argument("--mirror", metavar="DIR", help="mirror folder for --set images")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrpkit`` (exposed for documentation tools)."""
    from .data import CACHE_ENV, MIRROR_ENV, RESIZE_MODES
    from .models import VGG_ARCHS

    parser = _Parser(prog="lrpkit", description="Layer-wise Relevance Propagation for VGG "
                     "networks: explanations, images and weights (the companion of 'In-Depth "
                     "Hyperparameter Selection for LRP', TU Berlin 2022).")
    parser.add_argument("--version", action="version", version=f"lrpkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # explain
    ex = sub.add_parser("explain", help="write LRP heatmaps of images",
                        description="Explain the prediction of a VGG network for each IMAGE with "
                        "LRP and write the heatmap as OUT/<image name>.png (red: relevance for the "
                        "target class, blue: against). Prints the predicted class, the target and "
                        "its logit. Existing files are not replaced without --force; the files "
                        "appear when all images are done (an interrupted run writes nothing).")
    ex.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any format Pillow reads)")
    ex.add_argument("--set", metavar="NAME", help="also explain the images of a named image set "
                    "(see `lrpkit data list`)")
    ex.add_argument("--out", default=".", metavar="DIR", help="folder for the heatmaps (default: .)")
    _add_explanation_arguments(ex)
    ex.add_argument("--save-relevance", action="store_true", help="also write the relevance "
                    "[3, H, W] as OUT/<image name>.npy")
    ex.add_argument("--check", action="store_true", help="check each heatmap for numerical "
                    "instability (conservation by layer, concentration, patches) and print the verdict")
    ex.set_defaults(func=_cmd_explain)

    # pf
    pfp = sub.add_parser("pf", help="Pixel-Flipping / region perturbation of LRP heatmaps, with AUC",
                         description="Explain each IMAGE with LRP, perturb its patches in the order "
                         "of the heatmap and record the target's score after every step (thesis "
                         "section 2.2). Writes OUT/pf-scores.csv and prints the AUC of every curve. "
                         "The CSV has one row per image and step: step 0 is the original image "
                         "(step_kind 'original'), then one row per step of the schedule "
                         "('perturbed'), then a final step that turns the whole image gray "
                         "('gray'; the AUC includes it), so --steps N gives N + 2 rows per image "
                         "when no two log/linear counts coincide. An existing pf-scores.csv is not "
                         "replaced without --force; the file appears when all images are done.")
    pfp.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any format Pillow reads)")
    pfp.add_argument("--set", metavar="NAME", help="also use the images of a named image set")
    pfp.add_argument("--out", default=".", metavar="DIR", help="folder for pf-scores.csv (default: .)")
    pfp.add_argument("--patch-size", type=int, default=8, help="side of the square patches (default: 8)")
    pfp.add_argument("--order", choices=("morf", "lrf", "random"), default="morf",
                     help="most relevant first, least relevant first, or random (default: morf)")
    pfp.add_argument("--mode", choices=("inpainting", "random", "gray"), default="inpainting",
                     help="how patches are perturbed (default: inpainting, OpenCV Telea)")
    pfp.add_argument("--schedule", default="thesis", help="thesis (k^2 patches after step k), log, "
                     "linear, or comma-separated cumulative patch counts (default: thesis)")
    pfp.add_argument("--steps", type=_positive_int, default=None, help="number of steps of the log "
                     "and linear schedules (default: as many as the thesis schedule has)")
    pfp.add_argument("--score", choices=("logit", "softmax"), default="logit",
                     help="score of the target class (default: logit)")
    pfp.add_argument("--pf-seed", type=_nonneg_int, default=None, help="seed of the random order "
                     "and random mode (default: 0)")
    pfp.add_argument("--thesis-compat", action="store_true", help="reproduce the thesis code "
                     "(lrp-pf-auc 0.1.6), defects included")
    _add_explanation_arguments(pfp)
    pfp.set_defaults(func=_cmd_pf)

    # data
    da = sub.add_parser("data", help="the book's image sets: fetch, list, paths",
                        description="Image sets listed in data/images.tsv and data/sets.tsv, fetched "
                        f"into the cache (--cache, ${CACHE_ENV}, or data/cache/) and checked by sha256.")
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    fe = dsub.add_parser("fetch", help="fetch images and check their sha256",
                         description="Copy the images of the named sets (default: all) from a mirror "
                         f"folder (--mirror or ${MIRROR_ENV}) or download them from their source "
                         "URLs; a file with the wrong sha256 is rejected.")
    fe.add_argument("sets", nargs="*", metavar="SET", help="image sets (default: all images)")
    fe.add_argument("--mirror", metavar="DIR", help=f"folder holding the files (default: ${MIRROR_ENV}; "
                    "unset: download)")
    fe.add_argument("--cache", metavar="DIR", help=f"where to keep them (default: ${CACHE_ENV} or "
                    "data/cache/)")
    fe.add_argument("--force", action="store_true", help="fetch again even if cached and intact")
    fe.add_argument("--quiet", action="store_true", help="no progress bar")
    fe.set_defaults(func=_cmd_data_fetch)
    li = dsub.add_parser("list", help="list the named image sets",
                         description="List the named image sets and their first images.")
    li.set_defaults(func=_cmd_data_list)
    pa = dsub.add_parser("path", help="print the paths of a set's images (fetching them if needed)",
                         description="Print the cached path of each image of SET, fetching missing "
                         "ones first (unless --no-fetch).")
    pa.add_argument("set", metavar="SET")
    pa.add_argument("--mirror", metavar="DIR")
    pa.add_argument("--cache", metavar="DIR")
    pa.add_argument("--no-fetch", action="store_true", help="fail instead of fetching")
    pa.set_defaults(func=_cmd_data_path)
    da.set_defaults(func=lambda args: _missing_action(da))

    # weights
    we = sub.add_parser("weights", help="where the pretrained weights go, and whether they are there",
                        description="Show the torch hub cache file of the pretrained ImageNet weights "
                        "(TORCH_HOME is honoured), whether it is present and its sha256.")
    we.add_argument("--arch", choices=VGG_ARCHS, default="vgg16")
    we.set_defaults(func=_cmd_weights)

    from .experiment.commands import add_parser as add_experiment_parser
    add_experiment_parser(sub, _Parser)

    parser.set_defaults(func=lambda args: _missing_action(parser))
    return parser


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrpkit`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    debug = os.environ.get("LRPKIT_DEBUG", "").strip() not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except _UsageError as err:
        print(_one_line(err), file=sys.stderr)
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
        print(f"lrpkit: error: {_one_line(text)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if debug:
            raise
        print(f"lrpkit: internal error: {type(err).__name__}: {_one_line(err)} "
              "(set LRPKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
