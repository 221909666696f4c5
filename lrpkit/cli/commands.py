"""The commands of ``lrpkit``: ``data``, ``weights``, ``explain``, ``pf`` and ``train``.

``explain`` and ``pf`` check everything before they load the model or write anything (the options,
the images, the ``--out`` folder and every output name), then write through
:class:`lrpkit._outputs.Outputs`. The parser that dispatches to them is :mod:`lrpkit.cli.parser`.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .. import composites as _composites, rules as _rules
from .._outputs import Outputs, check_outputs

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The composites of ``--composite`` (registered in :data:`lrpkit.composites.COMPOSITES`).
COMPOSITES = tuple(key for key, c in _composites.COMPOSITES.items() if c.command_line)


class UsageError(Exception):
    """A wrong command line, reported in one line with exit status 2."""


def one_line(text: str) -> str:
    """``text`` (or an exception's message) on one line."""
    return " ".join(str(text).split())


def _report_moved(moved: list[tuple[Path, Path]]) -> int:
    for final, where in moved:
        print(f"lrpkit: error: {final} appeared while this run was working (another run into the "
              f"same --out?); it was kept, and this run's file is {where}", file=sys.stderr)
    return EXIT_ERROR if moved else EXIT_OK


# --------------------------------------------------------------------------------------------
# data and weights


def _cmd_data_fetch(args) -> int:
    from .. import data
    paths = data.fetch(args.sets or None, mirror=args.mirror, cache=args.cache, force=args.force,
                       progress=None if not args.quiet else False)
    root = data.cache_dir(args.cache)
    print(f"{len(paths)} images verified (sha256) in {root}")
    return EXIT_OK


def _cmd_data_list(args) -> int:
    from .. import data
    for name, files in data.image_sets().items():
        shown = ", ".join(Path(f).name for f in files[:3]) + (", ..." if len(files) > 3 else "")
        print(f"{name}\t{len(files)} image{'s' if len(files) != 1 else ''}\t{shown}")
    return EXIT_OK


def _cmd_data_path(args) -> int:
    from .. import data
    for record in data.image_set(args.set, fetch_missing=not args.no_fetch, mirror=args.mirror,
                                 cache=args.cache):
        print(record.path)
    return EXIT_OK


def _cmd_weights(args) -> int:
    from .. import models
    file = models.pretrained_file(args.arch)
    if file.is_file():
        digest, prefix, verified = models.check_pretrained(file)
        state = "verified" if verified else (
            f"UNVERIFIED: expected sha256 prefix {prefix}; possibly not the pretrained weights: "
            "delete it and download again, or run with --allow-unverified-weights")
        print(f"{args.arch}: {file} present, sha256 {digest} ({state})")
    else:
        url = models.pretrained_url(args.arch)
        print(f"{args.arch}: {file} missing; download {url} and place it there "
              "(or run with network access once)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# explain


_COMPOSITE_OPTIONS = ("gamma", "epsilon", "gammas", "rule", "zbox")


def _options_used(composite: str, rule: str) -> set:
    """The composite options of the command line that ``--composite`` (and ``--rule``) read."""
    if composite == "decreasing-gamma":
        return {"gammas"}   # its four block γ values, in one option
    if composite == "uniform":
        return {"rule", "zbox"} | {_rules.RULES[rule].parameter} - {None}
    return {p.name for p in _composites.named(composite).parameters}


def _check_applicable(args) -> None:
    """Refuse an option that would be ignored: a hyperparameter of another composite or rule,
    ``--steps`` of a schedule without steps, ``--pf-seed`` without anything random."""
    rule = args.rule or "epsilon"
    uses = _options_used(args.composite, rule)
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
        raise UsageError(f"lrpkit {args.command}: --{option.replace('_', '-')} {why} "
                          f"(see lrpkit {args.command} --help)")
    if args.command != "pf":
        return
    if args.steps is not None and args.schedule not in ("log", "linear"):
        which = args.schedule if args.schedule == "thesis" else "an explicit list of counts"
        raise UsageError(f"lrpkit pf: --steps applies to --schedule log or linear only, not "
                          f"{which} (see lrpkit pf --help)")
    if args.pf_seed is not None and "random" not in (args.order, args.mode) and args.mode != "road":
        raise UsageError("lrpkit pf: --pf-seed applies to --order random, --mode random or --mode road only "
                          "(see lrpkit pf --help)")
    if args.noise is not None and args.mode != "road":
        raise UsageError(f"lrpkit pf: --noise applies to --mode road only, not {args.mode} (see lrpkit pf --help)")
    if args.noise is not None and not (math.isfinite(args.noise) and args.noise >= 0):
        raise UsageError(f"lrpkit pf: --noise must be a finite number >= 0, got {args.noise}")
    if args.percentages is not None and (args.schedule != "thesis" or args.steps is not None):
        raise UsageError("lrpkit pf: give --percentages or --schedule/--steps, not both (see lrpkit pf --help)")


def _composite(args):
    """The composite of ``--composite`` with the hyperparameters given; the registry's defaults
    (:data:`lrpkit.composites.COMPOSITES`) for the others."""
    options = {"heuristic": args.heuristic, "maxpool": args.maxpool}
    given = {name: getattr(args, name) for name in ("gamma", "epsilon") if getattr(args, name) is not None}
    if args.composite == "decreasing-gamma" and args.gammas is not None:   # its four block γ values
        return _composites.decreasing_gamma(args.gammas, **options)
    if args.composite == "uniform":
        options.update(rule=args.rule or "epsilon", zbox=bool(args.zbox))
    return _composites.named(args.composite).composite(**given, **options)


def _check_fits(args, composite) -> None:
    """The composite's layer ranges against ``--arch``, on a model without weights (built on the
    meta device, in a fraction of a second), so that a misfit is refused before the real load."""
    import torch
    import torchvision

    from .. import canonical

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
    from .. import data

    images = [Path(p) for p in args.images]
    if args.set:
        images += [r.path for r in data.image_set(args.set, mirror=args.mirror)]
    if not images:
        raise UsageError(f"lrpkit {args.command}: give at least one IMAGE or --set NAME "
                          f"(see lrpkit {args.command} --help)")
    return images


def _model(args):
    from .. import models

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", models.WeightsWarning)
        model = models.vgg(args.arch, args.weights, seed=args.seed, device=args.device,
                           download=False if args.offline else None,
                           allow_unverified=args.allow_unverified_weights)
    for warning in caught:
        print(f"lrpkit: warning: {one_line(warning.message)}", file=sys.stderr)
    print(f"model: {models.weights_info(model).banner()}")
    return model


def _target(args) -> int | None:
    from .. import imagenet
    return None if args.target is None else imagenet.class_index(args.target)


def _cmd_explain(args) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from .. import data, diagnostics, imagenet, lrp, plotting

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
    check_outputs(out, finals, images, args.force)
    pixels = [data.read_rgb(p, args.size, args.resize) for p in images]
    model = _model(args)
    categories = imagenet.categories()
    device = next(model.parameters()).device
    bar = tqdm(list(zip(images, pixels, names)), desc="explain", unit="image",
               disable=True if len(images) == 1 else None)
    with Outputs(args.force) as outputs:
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


# --------------------------------------------------------------------------------------------
# pf


STEP_KINDS = ("original", "perturbed", "gray")


def _schedule(text: str):
    from .. import pf
    if text in pf.SCHEDULES:
        return text
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--schedule must be thesis, log, linear or comma-separated patch counts, "
                         f"got {text!r}") from None


def _percentages(text: str):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--percentages must be comma-separated numbers in (0, 100), got {text!r}") from None


def _check_pf_settings(args, pixels, schedule):
    """The ranges :func:`lrpkit.pf.pixel_flipping` checks, for these images, before any work; the
    schedule, from ``--percentages`` if given."""
    from .. import pf, road

    height, width = min(p.shape[0] for p in pixels), min(p.shape[1] for p in pixels)
    if not 1 <= args.patch_size <= min(height, width):
        raise ValueError(f"--patch-size must be in [1, {min(height, width)}] for {height}x{width} "
                         f"images, got {args.patch_size}")
    n_patches = -(-height // args.patch_size) * -(-width // args.patch_size)
    if args.percentages is not None:
        if any(p.shape[:2] != pixels[0].shape[:2] for p in pixels):
            raise ValueError("--percentages needs images of one size (use --resize crop or exact)")
        try:
            return road.percentage_schedule(n_patches, _percentages(args.percentages))
        except ValueError as err:
            raise ValueError(f"--percentages {args.percentages!r}: {err}") from None
    try:
        pf.flip_schedule(n_patches, schedule, args.steps)
    except ValueError as err:
        raise ValueError(f"--schedule {args.schedule!r} with --patch-size {args.patch_size}: "
                         f"{err}") from None
    return schedule


def _cmd_pf(args) -> int:
    import csv

    from tqdm.auto import tqdm

    from .. import data, lrp, pf

    _check_applicable(args)
    target = _target(args)
    composite = _composite(args)
    _check_fits(args, composite)
    schedule = _schedule(args.schedule)
    images = _image_paths(args)
    out = Path(args.out)
    names = _output_names(images)
    table = out / "pf-scores.csv"
    check_outputs(out, [table], images, args.force)
    pixels = [data.read_rgb(p, args.size, args.resize) for p in images]
    schedule = _check_pf_settings(args, pixels, schedule)
    model = _model(args)
    device = next(model.parameters()).device
    bar = tqdm(list(zip(images, pixels, names)), desc="pixel-flipping", unit="image",
               disable=True if len(images) == 1 else None)
    with Outputs(args.force) as outputs:
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
                    noise=0.01 if args.noise is None else args.noise, progress=False)
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
# train


def _cmd_train(args) -> int:
    import dataclasses

    from .. import training

    config = training.PROFILES[args.profile]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    result = training.train(config, Path(args.out), force=args.force, progress=not args.quiet)
    images = result.config.eval_images
    print(f"{'reused' if result.reused else 'trained'} {training.ARCH} ({result.parameters:,} parameters) on "
          f"{result.images:,} images of the task, profile {args.profile}, seed {result.config.seed}, "
          f"{result.seconds / 60:.1f} min: test accuracy {result.test_accuracy:.2%} ({images:,} test images), "
          f"validation {result.validation_accuracy:.2%}")
    print(f"weights -> {result.weights} (sha256 {result.sha256})")
    return EXIT_OK
