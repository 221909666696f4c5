"""The grid experiment's speed, side by side in one run: lrpkit's experiment against the thesis code's procedure.

Work (the issue's yardstick): LRP-Tutorial, a 4 x 4 grid of (γ, ε), 2 images (the first two of the
``random10`` set),
Pixel-Flipping with inpainting in the orders MoRF, LRF and random, 8 x 8 patches, thesis schedule,
random-weight VGG-16 (pretrained weights do not change the cost).

- lrpkit: the experiment's units on a config of that work (``lrpkit.experiment.runner.compute_unit``,
  what ``experiment.run`` does per image besides writing its file: the image's 16 heatmaps in batched
  LRP calls, then one Pixel-Flipping call for all its heatmaps and orders);
- the thesis code (``lrp-pf-auc`` 0.1.6) as its batch script runs: for every setting and order one
  process-worth of work, one LRP of the 2-image batch with its LRP-wrapped model and one
  Pixel-Flipping of the batch, scored by that wrapped model. Its settings are independent and cost
  the same, so it is timed on ``--thesis-settings`` settings (all three orders each) and scaled to
  the 16 settings; the output says so. Both run on torch's default thread count unless
  ``--thesis-threads`` says otherwise (on an idle 2-core machine, 2 threads are the thesis code's
  fastest: 48.6 s for one setting and order against 68.1 s on one thread). The two are
  interleaved (a unit, a setting and order, ...), so that both see the same machine.

It then prints, per heatmap and order, the forward passes and inpaintings the experiment actually
ran against one run per curve (28 and 27 for the thesis schedule), for the 4 x 4 run and -- counted
with ``pf.count_images`` on real heatmaps, without scoring them -- for one image's 16 x 16 grid.

    python bench/experiment_speed.py [--device cpu|cuda] [--thesis-settings 1] [--no-thesis] [--no-grid16]
"""
import argparse
import contextlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lrpkit import data, experiment, imagenet, lrp, pf
from lrpkit.experiment.grid import build_composite, grid_tensors
from lrpkit.experiment.runner import build_model, compute_unit

ORDERS = ("morf", "lrf", "random")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def config_spec(values, device, images):
    return {
        "name": "bench-tutorial-grid",
        "composite": {"family": "tutorial"},
        "grid": {"gamma": values, "epsilon": values},
        "images": {"set": "random10", "count": images},
        "pf": {"orders": list(ORDERS)},
        "model": {"arch": "vgg16", "weights": "random"},
        "device": str(device),
        "seed": 0,
    }


def thesis_rule_map(model, gamma, epsilon, device):
    """The thesis code's LRP-Tutorial rule map (bench/pf_speed.py) with the setting's γ and ε."""
    from lrp.filter import LayerFilter  # the thesis code (lrp-pf-auc 0.1.6), not lrpkit
    from lrp.rules import LrpEpsilonRule, LrpGammaRule, LrpZBoxRule, LrpZeroRule
    select = LayerFilter(model, (torch.nn.Conv2d, torch.nn.Linear))
    mean = torch.tensor(imagenet.MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.STD, device=device).view(1, 3, 1, 1)
    low = (torch.zeros(1, 3, 224, 224, device=device) - mean) / std
    high = (torch.ones(1, 3, 224, 224, device=device) - mean) / std
    return [
        (select(lambda n: n == 0), LrpZBoxRule, {"low": low, "high": high}),
        (select(lambda n: 1 <= n <= 16), LrpGammaRule, {"gamma": gamma}),
        (select(lambda n: 17 <= n <= 30), LrpEpsilonRule, {"epsilon": epsilon}),
        (select(lambda n: 31 <= n), LrpZeroRule, {}),
    ]


def thesis_setting(model, x, labels, gamma, epsilon, order, device, threads=None):
    """One setting and order as the thesis's batch script does it: LRP of the batch, then PF of the batch."""
    from lrp.core import LRP
    from pf.core import PixelFlipping
    from pf.objectives.constants import PixelFlippingObjectives
    from pf.perturbation_modes.constants import PerturbModes
    objective = {"morf": PixelFlippingObjectives.MoRF, "lrf": PixelFlippingObjectives.LRF,
                 "random": PixelFlippingObjectives.RANDOM}[order]
    with contextlib.redirect_stdout(io.StringIO()):          # it prints a line per step and timer
        torch.manual_seed(0)
        explainer = LRP(model)
        explainer.convert_layers(thesis_rule_map(model, gamma, epsilon, device))
        relevance = explainer.relevance(x.clone(), labels).detach()
        flipper = PixelFlipping(perturbation_steps=29, perturbation_size=8, perturb_mode=PerturbModes.INPAINTING,
                                sort_objective=objective)
        rows = torch.arange(len(labels), device=device)
        default = torch.get_num_threads()
        torch.set_num_threads(threads or default)
        try:
            with torch.no_grad():
                flipper(x.clone(), relevance, lambda batch: explainer.model(batch)[rows, labels])
        finally:
            torch.set_num_threads(default)
        return flipper.calculate_auc_score()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=int, default=4, help="values per axis of the timed grid (default 4)")
    parser.add_argument("--images", type=int, default=2, help="images (the first of the random10 set; default 2)")
    parser.add_argument("--thesis-settings", type=int, default=1, help="settings the thesis code is timed on")
    parser.add_argument("--workers", type=int, default=None, help="inpainting threads (default: lrpkit's)")
    parser.add_argument("--thesis-threads", type=int, default=None,
                        help="torch threads of the thesis code's Pixel-Flipping (default: torch's, as lrpkit)")
    parser.add_argument("--no-thesis", action="store_true", help="skip lrp-pf-auc")
    parser.add_argument("--no-grid16", action="store_true", help="skip the 16 x 16 count")
    parser.add_argument("--grid16-only", action="store_true", help="only the 16 x 16 count (no timing)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}; torch threads {torch.get_num_threads()} (thesis code: "
          f"{args.thesis_threads or torch.get_num_threads()}); load average {os.getloadavg()[0]:.2f}", flush=True)

    values = [0.0] + np.logspace(-4, 0, args.grid - 1).tolist()        # {0} ∪ log-spaced in [1e-4, 1]
    config = experiment.load_config(config_spec(values, device, args.images))
    units = experiment.units(config)
    model, _, config = build_model(config, echo=lambda line: None)
    records = data.image_set("random10")[:args.images]
    if not args.grid16_only:
        timing(args, device, values, config, units, model, records)
    if not args.no_grid16:
        grid16(device, model, records[0])
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


def timing(args, device, values, config, units, model, records):
    """lrpkit's units and the thesis code's settings, interleaved; then the counts of the run."""
    n_settings, n_curves = len(values) ** 2, len(values) ** 2 * len(ORDERS)
    print(f"\nLRP-Tutorial {len(values)}x{len(values)} grid x {len(units)} images "
          f"({', '.join(Path(u.file).stem for u in units)}) x {', '.join(ORDERS)}: {len(units) * n_curves} curves")

    # warm-up (allocator, kernels), then lrpkit's units and the thesis code's settings interleaved,
    # so that both see the same machine
    with torch.inference_mode():
        model(data.load_image(units[0].path, device=device))
    thesis_calls = [] if args.no_thesis else [
        (values[k % len(values)], values[(k * 7 + 3) % len(values)], order)
        for k in range(args.thesis_settings) for order in ORDERS]
    if thesis_calls:
        x = torch.cat([data.load_image(r.path, device=device) for r in records])
        labels = torch.tensor([r.class_index for r in records], device=device)
    tables, ours, theirs = [], [], []
    for k in range(max(len(units), len(thesis_calls))):
        if k < len(units):
            sync(device)
            t0 = time.perf_counter()
            tables.append(compute_unit(model, config, units[k], workers=args.workers).to_pandas())
            sync(device)
            ours.append(time.perf_counter() - t0)
            print(f"    lrpkit unit {units[k].id} ({Path(units[k].file).stem}): {ours[-1]:.1f} s", flush=True)
        if k < len(thesis_calls):
            gamma, epsilon, order = thesis_calls[k]
            sync(device)
            t0 = time.perf_counter()
            thesis_setting(model, x, labels, gamma, epsilon, order, device, threads=args.thesis_threads)
            sync(device)
            theirs.append(time.perf_counter() - t0)
            print(f"    thesis code, setting (γ={gamma:.3g}, ε={epsilon:.3g}), {order}: {theirs[-1]:.1f} s", flush=True)
    table = pd.concat(tables, ignore_index=True)
    per_unit = table.drop_duplicates("image")
    print(f"  lrpkit experiment, {len(units)} units: {sum(ours):8.1f} s (LRP {per_unit['unit_lrp_seconds'].sum():.1f} s, "
          f"Pixel-Flipping {per_unit['unit_pf_seconds'].sum():.1f} s)")
    if theirs:
        settings_timed = args.thesis_settings
        total = sum(theirs) / settings_timed * n_settings
        print(f"  thesis code (lrp-pf-auc 0.1.6), one LRP + one Pixel-Flipping of the {len(records)}-image batch per "
              f"setting and order: {total:8.1f} s, timed on {settings_timed} of {n_settings} settings x 3 orders "
              f"({sum(theirs) / settings_timed:.1f} s per setting) and scaled x{n_settings / settings_timed:.0f}: "
              f"its settings are independent and cost the same")
        print(f"  lrpkit faster by {total / sum(ours):.1f}x (target >= 4x)")

    print("\nforward passes and inpaintings per heatmap and order (one run per curve: 28 and 27)")
    for image, part in table.groupby("image_file", sort=False):
        curves = len(part)
        print(f"  {args.grid}x{args.grid} grid, {Path(image).name}: {part['unit_forward'].iloc[0] / curves:5.2f} "
              f"forward passes, {part['unit_inpainted'].iloc[0] / curves:5.2f} inpaintings "
              f"({part['unit_forward'].iloc[0]} and {part['unit_inpainted'].iloc[0]} for {curves} curves)")


def grid16(device, model, record):
    """Forward passes and inpaintings per heatmap and order for one image's 16 x 16 grid (counted)."""
    axis = experiment.default_axis()
    a, b = grid_tensors(axis, axis, device=device)
    x = data.load_image(record.path, device=device)
    t0 = time.perf_counter()
    relevance = lrp.relevance(model, x, torch.tensor([record.class_index], device=device),
                              build_composite("tutorial", "table", a, b, heuristic="tutorial", maxpool="avg"))
    lrp_seconds = time.perf_counter() - t0
    rows = [o for o in ORDERS for _ in range(1 if o == "random" else len(a))]
    heatmaps = torch.cat([relevance[:1 if o == "random" else len(a)] for o in ORDERS])
    forward, inpainted = pf.count_images(x.expand(len(rows), -1, -1, -1), heatmaps, order=rows)
    curves = len(a) * len(ORDERS)
    print(f"  16x16 grid, {Path(record.file).name}: {forward / curves:5.2f} forward passes, "
          f"{inpainted / curves:5.2f} inpaintings per heatmap and order ({forward} and {inpainted} for "
          f"{curves} curves; target <= 20 forward passes; its 256 heatmaps took {lrp_seconds:.0f} s)")


if __name__ == "__main__":
    main()
