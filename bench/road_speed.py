"""ROAD speed: lrpkit against the procedure of Quantus's ROAD metric, side by side in one run.

The workload is a 16-heatmap grid of one image (LRP-Tutorial, γ ∈ {0} ∪ logspace(-4, 0, 15),
ε = 0.25), graded by ROAD in MoRF and LeRF at ROAD's nine percentages (10 %, ..., 90 %) of 8 × 8
patches, with the noise off (so that both give the same numbers):

- **Quantus's procedure** (``quantus.ROAD`` 0.6 cannot run on colour images, so its steps are
  replayed here): for every order and percentage, ``quantus.functions.perturb_func.
  noisy_linear_imputation`` once per heatmap (each image imputed on its own), then the model on
  that step's batch of 16 images;
- **lrpkit**: ``road.road`` on all 32 curves in one call: each distinct perturbed image imputed once
  (one sparse solve, in worker threads) and scored once, channels-last, in batches of
  ``pf.options.cpu_batch_size`` (8 at 224 px, 32 at 64 px).

Two networks: VGG-16 with random weights on the castle at 224 px (the book's photographs; the
weights do not change the cost), and the network lrpkit trains on its ground-truth task (64 px,
4 × 4 patches) when ``--network DIR`` names one (``lrpkit train --out DIR``). For each, it prints
both times and their ratio, the largest difference between the two sets of curves, the number of
imputations against one per heatmap and step, and where the time goes (imputation or forward
passes, each timed alone on the same images).

    python bench/road_speed.py [--network DIR] [--repeats 2]

Machines are noisy: compare the ratios, and read the load average printed before and after.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from lrpkit import composites, data, imputation, lrp, models, pf, road

PERCENTAGES = road.PERCENTAGES
ORDERS = ("morf", "lrf")
GAMMAS = torch.cat([torch.zeros(1), torch.logspace(-4, 0, 15)])


def quantus_procedure(model, x, relevance, target, patch, ranks):
    """The steps of Quantus's ROAD metric: one imputation per heatmap and step, the model per step's batch.

    Returns the curves ``[order, heatmap, step]`` (the unperturbed score first, no gray step) and the
    seconds spent imputing and in forward passes."""
    from quantus.functions.perturb_func import noisy_linear_imputation

    _, channels, height, width = x.shape
    image = x[0].double().numpy()
    n = relevance.shape[0]
    impute_s = forward_s = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        base = model(x).double()[0, target].item()
    forward_s += time.perf_counter() - start
    curves = np.empty((len(ORDERS), n, len(PERCENTAGES) + 1))
    curves[:, :, 0] = base
    n_patches = ranks.shape[-1]
    for o, order in enumerate(ORDERS):
        for k, p in enumerate(PERCENTAGES):
            count = road.percentage_schedule(n_patches, PERCENTAGES)[k]
            batch = []
            t0 = time.perf_counter()
            for h in range(n):
                chosen = (ranks[o, h] < count).reshape(height // patch, width // patch)
                mask = imputation.patch_mask_to_pixels(chosen, patch, height, width)
                batch.append(noisy_linear_imputation(image, np.flatnonzero(mask), noise=0.0))
            t1 = time.perf_counter()
            with torch.inference_mode():
                scores = model(torch.from_numpy(np.stack(batch)).to(x.dtype)).double()[:, target]
            t2 = time.perf_counter()
            impute_s += t1 - t0
            forward_s += t2 - t1
            curves[o, :, k + 1] = scores.numpy()
    return curves, impute_s, forward_s


def lrpkit_road(model, x, relevance, target, patch):
    rows = relevance.shape[0]
    result = road.road(model, x.expand(2 * rows, -1, -1, -1), torch.cat([relevance, relevance]), target,
                       order=["morf"] * rows + ["lrf"] * rows, patch_size=patch, noise=0.0, keep_masks=True)
    return result


def parts_of_lrpkit(model, x, result, patch):
    """lrpkit's run taken apart: its distinct masks imputed serially, and as many forward passes."""
    masks = result.masks[:, 1:-1]                                           # the imputed steps
    distinct = {m.numpy().tobytes(): m.numpy() for m in masks.reshape(-1, *masks.shape[-2:])}
    image = x[0].double().numpy()
    start = time.perf_counter()
    for mask in distinct.values():
        imputation.impute(image, mask)
    impute_s = time.perf_counter() - start
    size = pf.options.cpu_batch_size(*x.shape[-2:])
    batch = x.expand(size, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(-(-result.n_forward // size)):
            model(batch)
    forward_s = time.perf_counter() - start
    return len(distinct), impute_s, forward_s


def workload(name, model, x, target, patch, repeats):
    relevance = lrp.relevance(model, x, target, composites.tutorial(gamma=GAMMAS, epsilon=0.25)).detach()
    n = relevance.shape[0]
    model.eval()
    times = {"quantus": [], "lrpkit": []}
    for _ in tqdm(range(repeats), desc=name, file=sys.stderr):
        start = time.perf_counter()
        result = lrpkit_road(model, x, relevance, target, patch)
        times["lrpkit"].append(time.perf_counter() - start)
        ranks = result.order.argsort(dim=1).numpy().reshape(len(ORDERS), n, -1)
        start = time.perf_counter()
        curves, q_impute, q_forward = quantus_procedure(model, x, relevance, target, patch, ranks)
        times["quantus"].append(time.perf_counter() - start)
    ours = result.scores.numpy()[:, :-1].reshape(len(ORDERS), n, -1)
    difference = np.abs(ours - curves).max() / np.abs(curves).max()
    distinct, impute_s, forward_s = parts_of_lrpkit(model, x, result, patch)
    best = {k: min(v) for k, v in times.items()}
    naive = n * len(ORDERS) * len(PERCENTAGES)
    print(f"\n{name}: 16 heatmaps x (MoRF, LeRF) x {len(PERCENTAGES)} percentages of {patch}x{patch} patches, noise off")
    print(f"  Quantus's procedure  {best['quantus']:7.2f} s  (imputation {q_impute:.2f} s, forward passes "
          f"{q_forward:.2f} s; {naive} imputations, {naive + 1} images scored)")
    print(f"  lrpkit road.road     {best['lrpkit']:7.2f} s  ({result.n_inpainted} imputations, {result.n_forward} "
          f"images scored)")
    print(f"  ratio                {best['quantus'] / best['lrpkit']:7.2f} x faster  (best of {repeats})")
    print(f"  same numbers: largest difference between the curves {difference:.1e} of the largest score")
    print(f"  lrpkit's parts, each alone: {distinct} imputations serially {impute_s:.2f} s, "
          f"{result.n_forward} forward passes {forward_s:.2f} s (channels-last, lrpkit's default batches)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", help="folder of `lrpkit train` (the ground-truth task's network)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    before = os.getloadavg()
    print(f"road_speed: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"load average before {before[0]:.2f}")
    vgg = models.vgg16(weights="random").eval()
    castle = data.load_image(data.image_set("castle")[0].path)
    workload("VGG-16 (random weights), castle, 224 px", vgg, castle, 483, 8, args.repeats)
    if args.network:
        from lrpkit import synthetic, training

        network = training.load_trained(args.network).eval()
        config = training.recorded_config(args.network)
        sample = synthetic.generate(config.task, 1, seed=config.seed, split="test")
        workload(f"trained network ({args.network}), test image 0, {config.task.size} px", network,
                 sample.normalized(), int(sample.labels[0]), 4, args.repeats)
    after = os.getloadavg()
    print(f"\nload average after {after[0]:.2f} (5 min {after[1]:.2f})")


if __name__ == "__main__":
    main()
