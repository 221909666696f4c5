"""Pixel-Flipping speed, measured side by side in one run (machines are noisy: compare ratios).

One castle heatmap (LRP-Tutorial on a random-weight VGG-16; pretrained weights do not change the
cost), 224×224, 8×8 patches, thesis schedule (29 steps, 30 scores), inpainting, MoRF:

- lrpkit ``pf.pixel_flipping``;
- the thesis code, ``lrp-pf-auc`` 0.1.6, scoring as in the thesis with its LRP-wrapped copy of the
  model (about twice the cost of a forward pass), and with the same plain forward pass as lrpkit;
- the floor: 28 forward passes one by one plus the 27 Telea calls of the run, serially;

then the 16 heatmaps of a 16-setting LRP-Tutorial γ grid of the same image scored in one call,
against one heatmap, for the MoRF and the random order. Methods are interleaved within each
repetition; the best (least disturbed) and the median of the repetitions are reported.

    python bench/pf_speed.py [--device cpu|cuda] [--repeats 3] [--grid-repeats 2] [--no-thesis] [--no-grid]

Progress goes to stderr: the expected runtime once the set-up is done (this machine's time of one
Pixel-Flipping run times the measured cost of the methods, :data:`COST`), then progress bars.
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from lrpkit import composites, data, imagenet, inpainting, lrp, models, pf

CASTLE = 483

#: The cost of one call of each method in lrpkit Pixel-Flipping runs (one heatmap, inpainting, MoRF),
#: measured with this script (--repeats 1 --grid-repeats 1, wall time) on a shared, busy 2-core CPU:
#: a constant for the estimate printed up front, not a result. "grid16_<order>" is the 16 heatmaps
#: in one call (the random order is shared by all 16, so their images are scored once).
COST = {"forward": 0.04, "floor": 1.05, "lrpkit": 1.0, "compat": 1.1, "thesis": 1.3, "thesis_lrp": 3.0,
        "grid16_morf": 14.0, "grid16_random": 1.0}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def floor(model, x, rgb, order, device):
    """28 single forward passes plus the 27 Telea inpaintings of the thesis schedule, one after another."""
    counts = pf.flip_schedule(784)[:-1]                                  # 27 inpainted steps (step 28 is full)
    rank = order.argsort()
    with torch.inference_mode():
        for _ in range(28):
            model(x)
    for c in counts:
        mask = inpainting.patch_mask_to_pixels((rank < c).reshape(28, 28).numpy(), 8, 224, 224)
        inpainting.telea(rgb, mask, 3)
    sync(device)


def thesis_lrp_model(model, device):
    """The thesis's forward pass for Pixel-Flipping: its LRP-Tutorial-wrapped copy of the model
    (every conv/linear layer runs twice: the layer and its modified copy)."""
    from lrp.core import LRP  # the thesis code (lrp-pf-auc 0.1.6), not lrpkit.lrp
    from lrp.filter import LayerFilter
    from lrp.rules import LrpEpsilonRule, LrpGammaRule, LrpZBoxRule, LrpZeroRule
    wrapped = LRP(model)
    select = LayerFilter(model, (torch.nn.Conv2d, torch.nn.Linear))
    mean = torch.tensor(imagenet.MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.STD, device=device).view(1, 3, 1, 1)
    low = ((torch.zeros(1, 3, 224, 224, device=device) - mean) / std)
    high = ((torch.ones(1, 3, 224, 224, device=device) - mean) / std)
    wrapped.convert_layers([
        (select(lambda n: n == 0), LrpZBoxRule, {"low": low, "high": high}),
        (select(lambda n: 1 <= n <= 16), LrpGammaRule, {"gamma": 0.25}),
        (select(lambda n: 17 <= n <= 30), LrpEpsilonRule, {"epsilon": 0.25}),
        (select(lambda n: 31 <= n), LrpZeroRule, {}),
    ])
    return wrapped.model


def thesis_code(model, x, relevance):
    from pf.core import PixelFlipping  # the thesis code (lrp-pf-auc 0.1.6), not lrpkit.pf
    from pf.objectives.constants import PixelFlippingObjectives
    from pf.perturbation_modes.constants import PerturbModes
    flipper = PixelFlipping(perturbation_steps=29, perturbation_size=8, perturb_mode=PerturbModes.INPAINTING,
                            sort_objective=PixelFlippingObjectives.MoRF)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):   # it prints a line per step
        flipper(x.clone(), relevance.clone(), lambda batch: model(batch)[:, CASTLE])
        return flipper.calculate_auc_score()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid-repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="inpainting threads (default: lrpkit's)")
    parser.add_argument("--no-thesis", action="store_true", help="skip lrp-pf-auc")
    parser.add_argument("--no-grid", action="store_true", help="skip the 16-heatmap grid")
    args = parser.parse_args()
    device = torch.device(args.device)
    print("set-up: the model, the castle's heatmaps (one, and a 16-setting grid) and a warm-up run; "
          "the expected runtime follows", file=sys.stderr, flush=True)

    try:
        castle = data.mirror_file("castle.jpg")
    except FileNotFoundError as err:
        sys.exit(f"pf_speed: {err}")
    model = models.vgg("vgg16", weights="random", seed=0, device=device, progress=False)
    x, rgb = data.load_image(castle, return_rgb=True, device=device)
    one = lrp.relevance(model, x, CASTLE, composites.tutorial())
    gammas = torch.tensor([0.0] + np.logspace(-4, 0, 15).tolist(), device=device)
    grid = lrp.relevance(model, x, CASTLE, composites.tutorial(gamma=gammas))        # [16, 3, 224, 224]
    grid_x = x.expand(len(gammas), -1, -1, -1)
    kwargs = dict(patch_size=8, mode="inpainting", schedule="thesis", score="logit", workers=args.workers)

    def ours(order="morf", xs=x, rel=one):
        return pf.pixel_flipping(model, xs, rel, CASTLE, order=order, **kwargs)

    print(f"device {device}; torch threads {torch.get_num_threads()}; inpainting workers "
          f"{kwargs['workers'] if kwargs['workers'] is not None else inpainting.default_workers(device.type != 'cpu')}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    # warm-up: worker threads, allocator, kernels
    ours(xs=x, rel=one)
    with torch.inference_mode():
        model(x)
    one_run, res = timed(ours, device)
    order = res.order[0]

    wrapped = None if args.no_thesis else thesis_lrp_model(model, device)

    def single_forward():
        with torch.inference_mode():
            model(x)

    methods = {
        "forward": single_forward,
        "floor": lambda: floor(model, x, rgb, order, device),
        "lrpkit": ours,
        "compat": lambda: pf.pixel_flipping(model, x, one, CASTLE, thesis_compat=True, workers=args.workers),
    }
    if not args.no_thesis:
        methods["thesis"] = lambda: thesis_code(model, x, one)
        methods["thesis_lrp"] = lambda: thesis_code(wrapped, x, one)
    grid_cost = 0 if args.no_grid else args.grid_repeats * sum(1 + COST[f"grid16_{o}"] for o in ("morf", "random"))
    expected = one_run * (args.repeats * sum(COST[name] for name in methods) + grid_cost)
    print(f"expected runtime: about {_minutes(expected)} (one Pixel-Flipping run takes {one_run:.2f} s here; "
          f"{args.repeats} repetitions of {len(methods)} methods" + ("" if args.no_grid else
          f", then the 16-heatmap grid {args.grid_repeats} times for 2 orders") + ")", file=sys.stderr, flush=True)

    times = {name: [] for name in methods}
    with tqdm(total=args.repeats * len(methods), desc="pf_speed", unit="call", file=sys.stderr) as bar:
        for repeat in range(args.repeats):
            for name, fn in methods.items():
                bar.set_postfix_str(f"repetition {repeat + 1}: {name}")
                times[name].append(timed(fn, device)[0])
                bar.update()
            bar.write(f"  repetition {repeat + 1}/{args.repeats}: " +
                      ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v) +
                      f" (load {os.getloadavg()[0]:.2f})", file=sys.stdout)
    best = {k: min(v) for k, v in times.items() if v}
    med = {k: statistics.median(v) for k, v in times.items() if v}

    def line(label, key, note=""):
        print(f"{label:46s}{best[key]:9.2f}{med[key]:9.2f}{best[key] / best['floor']:9.2f}{note}")

    print("\nPixel-Flipping of one 224x224 heatmap, 8x8 patches, thesis schedule (30 scores), inpainting, MoRF")
    print(f"{'seconds per heatmap':46s}{'best':>9s}{'median':>9s}{'/ floor':>9s}")
    print(f"{'one VGG-16 forward pass (batch 1)':46s}{best['forward']:9.3f}{med['forward']:9.3f}")
    line("floor: 28 forwards + 27 Telea calls", "floor")
    line("lrpkit pf.pixel_flipping", "lrpkit", f"   {res.n_forward} images scored")
    line("lrpkit, thesis_compat=True", "compat")
    if "thesis" in best:
        for key, label in (("thesis_lrp", "lrp-pf-auc 0.1.6, LRP-wrapped model (thesis)"),
                           ("thesis", "lrp-pf-auc 0.1.6, same plain forward")):
            line(label, key, f"   lrpkit faster by {best[key] / best['lrpkit']:.2f}x (best), "
                             f"{med[key] / med['lrpkit']:.2f}x (median)")

    if not args.no_grid:
        print("\n16 heatmaps of one image (LRP-Tutorial, 16 gamma values) in one call, against one heatmap")
        bar = tqdm(total=2 * args.grid_repeats * 2, desc="pf_speed grid", unit="call", file=sys.stderr)
        for order in ("morf", "random"):
            singles, grids = [], []
            for _ in range(args.grid_repeats):   # interleaved, so both see the same machine
                bar.set_postfix_str(f"{order}: one heatmap")
                singles.append(timed(lambda: ours(order), device)[0])
                bar.update()
                bar.set_postfix_str(f"{order}: 16 heatmaps")
                seconds, result = timed(lambda: ours(order, grid_x, grid), device)
                grids.append(seconds)
                bar.update()
            bar.write(f"  {order:7s} one heatmap {min(singles):6.2f} s, 16 heatmaps {min(grids):7.2f} s: "
                      f"{min(grids) / min(singles):5.2f}x (best), {statistics.median(grids) / statistics.median(singles):5.2f}x "
                      f"(median); {result.n_forward} images scored for 16 heatmaps", file=sys.stdout)
        bar.close()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


def _minutes(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


if __name__ == "__main__":
    main()
