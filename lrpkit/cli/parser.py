"""The parser of ``lrpkit``: its subcommands and options, each closed set read from the tuple beside
its concept (``composites.UNIFORM_RULES``, ``heuristics.HEURISTICS``, ``pf.ORDERS``, ...)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .. import __version__
from .commands import (COMPOSITES, EXIT_USAGE, UsageError, _cmd_data_fetch, _cmd_data_list, _cmd_data_path,
                       _cmd_explain, _cmd_pf, _cmd_train, _cmd_weights)

__all__ = ["build_parser", "Parser", "whole_number"]


class Parser(argparse.ArgumentParser):
    """argparse's parser with errors in one line (:class:`~lrpkit.cli.commands.UsageError`)."""

    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


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


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value
    return parse


def _add_inputs(parser: argparse.ArgumentParser, set_help: str, outputs: str) -> None:
    """The images and the output folder of ``explain`` and ``pf``."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any format Pillow reads)")
    parser.add_argument("--set", metavar="NAME", help=set_help)
    parser.add_argument("--out", default=".", metavar="DIR", help=f"folder for {outputs} (default: .)")


def _add_explanation_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``explain`` and ``pf``: composite, target, model, images."""
    from ..composites import COMPOSITES as NAMED, DECREASING_GAMMA, UNIFORM_RULES
    from ..data import RESIZE_MODES
    from ..heuristics import HEURISTICS
    from ..models import VGG_ARCHS
    from ..rules import POOLING

    ex = parser
    ex.add_argument("--composite", choices=COMPOSITES, default="tutorial",
                    help="LRP-Tutorial (thesis Table 2.4), Decreasing-gamma (Table 2.3) or one rule "
                    "everywhere (default: tutorial)")
    # defaults of None tell an option given from one left out: one that does not apply is refused
    gamma, epsilon = (NAMED["tutorial"].parameter(name).default for name in ("gamma", "epsilon"))
    ex.add_argument("--gamma", type=_nonneg, default=None, help="gamma of the tutorial composite or "
                    f"of --composite uniform --rule gamma (default: {gamma:g})")
    ex.add_argument("--epsilon", type=_nonneg, default=None, help="epsilon of the tutorial "
                    f"composite or of --composite uniform --rule epsilon (default: {epsilon:g})")
    ex.add_argument("--gammas", type=_floats, default=None, metavar="G1,G2,G3,G4",
                    help="gammas of the --composite decreasing-gamma blocks (default: "
                    f"{','.join(f'{p.default:g}' for p in DECREASING_GAMMA)})")
    ex.add_argument("--rule", choices=UNIFORM_RULES, default=None,
                    help="rule of --composite uniform (default: epsilon)")
    ex.add_argument("--zbox", action="store_true", default=None,
                    help="zᴮ rule in the pixel layer (--composite uniform only)")
    ex.add_argument("--heuristic", choices=HEURISTICS, default="tutorial",
                    help="denominator stabiliser, thesis section 2.1.5 (default: tutorial)")
    ex.add_argument("--maxpool", choices=POOLING, default="avg", help="max-pool relevance "
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
    parser = Parser(prog="lrpkit", description="Layer-wise Relevance Propagation for VGG "
                     "networks: explanations, images and weights (the companion of 'In-Depth "
                     "Hyperparameter Selection for LRP', TU Berlin 2022).")
    parser.add_argument("--version", action="version", version=f"lrpkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add_explain(sub)
    _add_pf(sub)
    _add_data(sub)
    _add_weights(sub)
    _add_train(sub)

    from ..experiment.commands import add_parser as add_experiment_parser
    add_experiment_parser(sub, Parser)

    parser.set_defaults(func=lambda args: _missing_action(parser))
    return parser


def _add_explain(sub) -> None:
    ex = sub.add_parser("explain", help="write LRP heatmaps of images",
                        description="Explain the prediction of a VGG network for each IMAGE with "
                        "LRP and write the heatmap as OUT/<image name>.png (red: relevance for the "
                        "target class, blue: against). Prints the predicted class, the target and "
                        "its logit. Existing files are not replaced without --force; the files "
                        "appear when all images are done (an interrupted run writes nothing).")
    _add_inputs(ex, "also explain the images of a named image set (see `lrpkit data list`)", "the heatmaps")
    _add_explanation_arguments(ex)
    ex.add_argument("--save-relevance", action="store_true", help="also write the relevance "
                    "[3, H, W] as OUT/<image name>.npy")
    ex.add_argument("--check", action="store_true", help="check each heatmap for numerical "
                    "instability (conservation by layer, concentration, patches) and print the verdict")
    ex.set_defaults(func=_cmd_explain)


def _add_pf(sub) -> None:
    from ..pf import MODES, ORDERS, SCORES

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
    _add_inputs(pfp, "also use the images of a named image set", "pf-scores.csv")
    pfp.add_argument("--patch-size", type=int, default=8, help="side of the square patches (default: 8)")
    pfp.add_argument("--order", choices=ORDERS, default="morf",
                     help="most relevant first, least relevant first, or random (default: morf)")
    pfp.add_argument("--mode", choices=MODES, default="inpainting",
                     help="how patches are perturbed (default: inpainting, OpenCV Telea; road: ROAD's noisy "
                     "linear imputation, Rong et al. 2022)")
    pfp.add_argument("--schedule", default="thesis", help="thesis (k^2 patches after step k), log, "
                     "linear, or comma-separated cumulative patch counts (default: thesis)")
    pfp.add_argument("--steps", type=whole_number(1), default=None, help="number of steps of the log "
                     "and linear schedules (default: as many as the thesis schedule has)")
    pfp.add_argument("--percentages", default=None, help="instead of --schedule: comma-separated "
                     "percentages of the patches perturbed after each step, in (0, 100), e.g. ROAD's "
                     "10,20,30,40,50,60,70,80,90")
    pfp.add_argument("--noise", type=float, default=None, help="--mode road: standard deviation of the "
                     "Gaussian noise added to the imputed pixels, in normalized input units (default: 0.01)")
    pfp.add_argument("--score", choices=SCORES, default="logit",
                     help="score of the target class (default: logit)")
    pfp.add_argument("--pf-seed", type=whole_number(0), default=None, help="seed of the random order "
                     "and random mode (default: 0)")
    pfp.add_argument("--thesis-compat", action="store_true", help="reproduce the thesis code "
                     "(lrp-pf-auc 0.1.6), defects included")
    _add_explanation_arguments(pfp)
    pfp.set_defaults(func=_cmd_pf)


def _add_data(sub) -> None:
    from ..data import CACHE_ENV, MIRROR_ENV

    da = sub.add_parser("data", help="the book's image sets: fetch, list, paths",
                        description="Image sets listed in data/images.tsv and data/sets.tsv, fetched "
                        f"into the cache (--cache, ${CACHE_ENV}, or data/cache/) and checked by sha256.")
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", parser_class=Parser)
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


def _add_weights(sub) -> None:
    from ..models import VGG_ARCHS

    we = sub.add_parser("weights", help="where the pretrained weights go, and whether they are there",
                        description="Show the torch hub cache file of the pretrained ImageNet weights "
                        "(TORCH_HOME is honoured), whether it is present and its sha256.")
    we.add_argument("--arch", choices=VGG_ARCHS, default="vgg16")
    we.set_defaults(func=_cmd_weights)


def _add_train(sub) -> None:
    from ..training import PROFILES

    sizes = ", ".join(f"{name} {config.images:,} images" for name, config in PROFILES.items())
    tr = sub.add_parser("train", help="train a VGG-16-layout network on the ground-truth task",
                        description="Train a narrow network of VGG-16's layout (13 convolutions with batch "
                        "norm, 5 max-pools, 3 dense layers: VGG-16's 38 layer indices) on the images of "
                        "lrpkit.synthetic, seeded, on the CPU, and write OUT/weights.pt and OUT/training.json "
                        "(config, test and validation accuracy, the weights' sha256). Prints the test accuracy "
                        "and the sha256. A checkpoint (OUT/checkpoint.pt) is written as it trains: after "
                        "Ctrl-C the same command continues from it. A complete training of the same config "
                        "is reused; one of another config is not replaced without --force. Every file appears "
                        "whole or not at all.")
    tr.add_argument("--profile", choices=tuple(PROFILES), default="quick",
                    help=f"how much training ({sizes}; default: quick)")
    tr.add_argument("--out", required=True, metavar="DIR", help="folder for the weights, the record and the "
                    "checkpoint (created if needed)")
    tr.add_argument("--seed", type=whole_number(0), default=None, help="seed of the initial weights, dropout and "
                    "images (default: the profile's, 0)")
    tr.add_argument("--force", action="store_true", help="train from scratch even if OUT holds a checkpoint or "
                    "a training (of any config); they are replaced when the new training is complete")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE
