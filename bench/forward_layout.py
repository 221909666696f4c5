"""A network's forward pass on the CPU with the input in the standard (NCHW) and the channels-last
layout, and in batches of several sizes, side by side in one run: how :mod:`lrpkit.pf` scores its
perturbed images on a CPU (channels-last; :func:`lrpkit.pf.options.cpu_batch_size` images per
forward pass: 8 at 224 px, more for smaller images, at most 32).

``--network vgg16`` (random weights) is the thesis's network; ``--network shapes`` is VGG-16's
layout at a quarter of its widths (:func:`lrpkit.training.build_network`, random weights), the
network of the ground-truth chapter, which scores 64 px images.

Each image size is timed in alternating rounds over every (layout, batch) pair, on the same images,
so that all see the same machine; the ratios to the old way (standard layout, batch of 2) are what
count. Also prints the largest difference of the outputs against the largest output (float
rounding: the layouts sum in another order).

    python bench/forward_layout.py [--network vgg16] [--batches 2 8 16 32] [--sizes 224 112] [--rounds 3]
    python bench/forward_layout.py --network shapes --sizes 64 --batches 2 8 16 32 64
"""
import argparse
import os
import time

import torch

from lrpkit import models, training


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=["vgg16", "shapes"], default="vgg16",
                        help="VGG-16, or its layout at a quarter of the widths (the ground-truth chapter's)")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8, 16, 32], help="images per forward pass")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 112], help="image sizes (px)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per size")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    torch.manual_seed(0)
    if args.network == "vgg16":
        model = models.vgg16(weights="random", seed=0, device="cpu")
    else:
        model = training.build_network(6).eval()
    print(f"network {args.network}")
    batches = sorted(set(args.batches))
    for size in args.sizes:
        x = torch.randn(max(batches), 3, size, size)
        layouts = {"standard": x, "channels-last": x.contiguous(memory_format=torch.channels_last)}
        pairs = [(name, b) for name in layouts for b in batches]
        seconds = {pair: [] for pair in pairs}
        with torch.inference_mode():
            outputs = {name: model(batch) for name, batch in layouts.items()}          # also the warm-up
            for _ in range(args.rounds):
                for name, b in pairs:
                    images = layouts[name][:max(batches)]
                    t0 = time.perf_counter()
                    for start in range(0, len(images), b):                             # the same images
                        model(images[start:start + b])
                    seconds[name, b].append((time.perf_counter() - t0) / len(images))
        base = min(seconds["standard", batches[0]])
        diff = (outputs["standard"] - outputs["channels-last"]).abs().max() / outputs["standard"].abs().max()
        print(f"{size} px, {max(batches)} images; ms per image (speed-up against standard, batch {batches[0]}):")
        for name in layouts:
            cells = [f"batch {b}: {min(seconds[name, b]) * 1e3:6.1f} ({base / min(seconds[name, b]):.2f}x)"
                     for b in batches]
            print(f"  {name:14s} " + "   ".join(cells))
        print(f"  outputs of the two layouts differ by {diff:.1e} of the largest")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
