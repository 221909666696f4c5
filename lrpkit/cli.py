"""The ``lrpkit`` command line.

::

    lrpkit data fetch [SET ...] [--mirror DIR]      # fetch and checksum the book's images
    lrpkit data list                                 # the named image sets
    lrpkit data path SET                             # paths of a set's images (fetched if needed)
    lrpkit weights [--arch vgg16]                    # where the pretrained weights go
    lrpkit explain IMAGE ... --composite tutorial --gamma .25 --epsilon .25 --out DIR
    lrpkit pf IMAGE ... --order morf --mode inpainting --patch-size 8 --out DIR

Every subcommand has ``--help``. Errors print one line on stderr and exit with status 1 (2 for a
wrong command line, 130 when interrupted); set ``LRPKIT_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

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
        state = "verified" if verified else f"UNVERIFIED (expected sha256 prefix {prefix})"
        print(f"{args.arch}: {file} present, sha256 {digest} ({state})")
    else:
        url = models._imagenet_weights(args.arch).url
        print(f"{args.arch}: {file} missing; download {url} and place it there "
              "(or run with network access once)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# explain


def _composite(args):
    from . import composites
    common = {"heuristic": args.heuristic, "maxpool": args.maxpool}
    if args.composite == "tutorial":
        return composites.tutorial(gamma=args.gamma, epsilon=args.epsilon, **common)
    if args.composite == "decreasing-gamma":
        return composites.decreasing_gamma(gammas=args.gammas, **common)
    return composites.uniform(args.rule, epsilon=args.epsilon, gamma=args.gamma, zbox=args.zbox, **common)


def _output_names(paths: Sequence[Path]) -> list[str]:
    """File stems for the heatmaps, made unique when two inputs share a name."""
    names, seen = [], {}
    for path in paths:
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def _images_and_model(args):
    """Read every image (before the model is built: a bad file fails at once), then the model."""
    from . import data, models

    images = [Path(p) for p in args.images]
    if args.set:
        images += [r.path for r in data.image_set(args.set, mirror=args.mirror)]
    if not images:
        raise _UsageError(f"lrpkit {args.command}: give at least one IMAGE or --set NAME "
                          f"(see lrpkit {args.command} --help)")
    pixels = [data.read_rgb(p, args.size, args.resize) for p in images]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", models.WeightsWarning)
        model = models.vgg(args.arch, args.weights, seed=args.seed, device=args.device,
                           download=False if args.offline else None)
    for warning in caught:
        print(f"lrpkit: warning: {_one_line(warning.message)}", file=sys.stderr)
    print(f"model: {models.weights_info(model).banner()}")
    return images, pixels, model


def _cmd_explain(args) -> int:
    from tqdm.auto import tqdm

    from . import data, diagnostics, lrp, models, plotting

    target = None if args.target is None else models.class_index(args.target)
    images, pixels, model = _images_and_model(args)
    composite = _composite(args)
    categories = models.imagenet_categories()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = _output_names(images)
    device = next(model.parameters()).device
    bar = tqdm(list(zip(images, pixels, names)), desc="explain", unit="image",
               disable=True if len(images) == 1 else None)
    for path, rgb, name in bar:
        x = data.normalize(rgb, device)
        explanation = lrp.explain(model, x, target=target, composite=composite)
        logits, relevance = explanation.logits[0], explanation.relevance
        predicted, chosen = int(logits.argmax()), int(explanation.target[0])
        png = plotting.save_heatmap(relevance[0], out / f"{name}.png")
        if args.save_relevance:
            import numpy as np
            np.save(out / f"{name}.npy", relevance[0].detach().cpu().numpy())
        tqdm.write(
            f"{path}: predicted {predicted} {categories[predicted]!r} (logit "
            f"{float(logits[predicted]):.4g}); target {chosen} {categories[chosen]!r} (logit "
            f"{float(logits[chosen]):.4g}); relevance sum {float(relevance.sum()):.4g} -> {png}",
            file=sys.stdout)
        if args.check:
            tqdm.write(f"{path}: check: {diagnostics.instability(explanation).verdict(0)}", file=sys.stdout)
    return EXIT_OK


def _cmd_pf(args) -> int:
    import csv

    from tqdm.auto import tqdm

    from . import data, lrp, models, pf

    target = None if args.target is None else models.class_index(args.target)
    schedule = args.schedule if args.schedule in pf.SCHEDULES else list(_ints(args.schedule))
    images, pixels, model = _images_and_model(args)
    composite = _composite(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = _output_names(images)
    device = next(model.parameters()).device
    table = out / "pf-scores.csv"
    with open(table, "w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["image", "order", "mode", "step", "flips", "fraction_flipped", f"score_{args.score}"])
        bar = tqdm(list(zip(images, pixels, names)), desc="pixel-flipping", unit="image",
                   disable=True if len(images) == 1 else None)
        for path, rgb, name in bar:
            x = data.normalize(rgb, device)
            explanation = lrp.explain(model, x, target=target, composite=composite)
            result = pf.pixel_flipping(model, x, explanation.relevance, explanation.target,
                                       patch_size=args.patch_size, order=args.order, mode=args.mode,
                                       schedule=schedule, score=args.score, seed=args.pf_seed,
                                       n_steps=args.steps, thesis_compat=args.thesis_compat,
                                       progress=False)
            for step, (flips, fraction, value) in enumerate(zip(result.flips_per_step, result.fraction_flipped,
                                                                 result.scores[0].tolist())):
                rows.writerow([name, args.order, args.mode, step, flips, f"{fraction:.6g}", f"{value:.8g}"])
            tqdm.write(f"{path}: target {int(result.targets[0])}, {args.order} {args.mode}, "
                       f"{result.scores.shape[1]} scores, AUC {float(result.auc[0]):.6g}", file=sys.stdout)
    print(f"scores -> {table}")
    return EXIT_OK


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--schedule must be thesis, log, linear or comma-separated patch counts, "
                         f"got {text!r}") from None


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
    ex.add_argument("--gamma", type=_nonneg, default=0.25, help="gamma of the tutorial composite or of "
                    "--rule gamma (default: 0.25)")
    ex.add_argument("--epsilon", type=_nonneg, default=0.25, help="epsilon of the tutorial composite "
                    "or of --rule epsilon (default: 0.25)")
    ex.add_argument("--gammas", type=_floats, default=(0.5, 0.25, 0.1, 0.0), metavar="G1,G2,G3,G4",
                    help="gammas of the decreasing-gamma blocks (default: 0.5,0.25,0.1,0)")
    ex.add_argument("--rule", choices=UNIFORM_RULES, default="epsilon",
                    help="rule of --composite uniform (default: epsilon)")
    ex.add_argument("--zbox", action="store_true", help="z^B rule in the pixel layer (uniform only)")
    ex.add_argument("--heuristic", choices=("tutorial", "zennit", "vanilla"), default="tutorial",
                    help="denominator stabiliser, thesis section 2.1.5 (default: tutorial)")
    ex.add_argument("--maxpool", choices=("avg", "max"), default="avg", help="max-pool relevance "
                    "as 2x2 average pooling (tutorial) or winner-takes-all (default: avg)")
    ex.add_argument("--target", metavar="CLASS", help="class to explain: index 0-999 or ImageNet "
                    "name (default: the predicted class)")
    ex.add_argument("--arch", choices=VGG_ARCHS, default="vgg16", help="network (default: vgg16)")
    ex.add_argument("--weights", default="auto", metavar="WEIGHTS", help="'imagenet' (torchvision's "
                    "pretrained weights from the torch hub cache, downloaded once), 'random' (seeded), "
                    "'auto' (imagenet if available, else random with a warning) or a state-dict file "
                    "(default: auto)")
    ex.add_argument("--seed", type=int, default=0, help="seed of random weights (default: 0)")
    ex.add_argument("--offline", action="store_true", help="never download weights (also: "
                    "LRPKIT_OFFLINE=1)")
    ex.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    ex.add_argument("--size", type=int, default=224, help="input side in pixels (default: 224)")
    ex.add_argument("--resize", choices=RESIZE_MODES, default="auto", help="crop: shorter side to "
                    "256 then centre 224 crop; exact: stretch; none: must already be the size; auto "
                    "(default): none if the image already has the size, else crop")
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
                        "its logit.")
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
                         "section 2.2). Writes OUT/pf-scores.csv and prints the AUC of every curve.")
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
    pfp.add_argument("--steps", type=int, default=None, help="number of steps of the log and linear "
                     "schedules")
    pfp.add_argument("--score", choices=("logit", "softmax"), default="logit",
                     help="score of the target class (default: logit)")
    pfp.add_argument("--pf-seed", type=int, default=0, help="seed of the random order and random "
                     "mode (default: 0)")
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
        print(f"lrpkit: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if debug:
            raise
        print(f"lrpkit: internal error: {type(err).__name__}: {_one_line(err)} "
              "(set LRPKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
