"""The six castle sweeps of thesis Figure 3.3: batched grid calls against one call per setting,
side by side in one run (machines are noisy: compare ratios, not seconds).

Each sweep runs 20 settings, {0} ∪ 19 values log-spaced in [1e-5, 10], with the thesis code's
composites and its zennit stabilizer: the six sweeps of ``lrpkit.sweeps.SWEEPS`` (z^B + γ, z^B + ε,
composite γ, composite ε, uniform γ, uniform ε; see that module for their rules).

The code's rules change the forward pass, so a grid runs one forward pass per setting; batching
shares the layers below the first varied one and runs the rest as one batch. Methods are
interleaved within each repetition and the median is reported. ``--thesis-code`` also times the
thesis code (``lrp-pf-auc``), one call per setting.

    python bench/sweep_speed.py [--repeats 1] [--sweeps 1,3] [--chunk-size 20] [--thesis-code]

Random VGG-16 weights (pretrained weights make no difference to the cost).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from lrpkit import data, lrp, models, sweeps

# the repository root: the independent oracles of oracles/, shared with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VALUES = sweeps.values()  # Fig. 3.3's grid
#: The thesis code's rule map of each sweep (oracles/thesis_code.py).
ORACLE = {"zbox-gamma": "zbox_gamma", "zbox-epsilon": "zbox_epsilon", "composite-gamma": "tutorial-gamma",
          "composite-epsilon": "tutorial-epsilon", "uniform-gamma": "uniform_gamma", "uniform-epsilon": "uniform_epsilon"}


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def thesis_code_loop(model, x, oracle, values):
    from oracles.thesis_code import thesis_code_relevance

    def run():
        for v in values.tolist():
            if oracle.startswith("tutorial"):
                gamma, epsilon = (v, 0.25) if oracle.endswith("gamma") else (0.25, v)
                thesis_code_relevance(model, x, "tutorial", gamma, epsilon)
            else:
                thesis_code_relevance(model, x, oracle, v)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sweeps", default="1,2,3,4,5,6", help="which sweeps, by number (default: all six)")
    parser.add_argument("--chunk-size", type=int, default=20, help="settings per batched call (default: 20)")
    parser.add_argument("--thesis-code", action="store_true", help="also time lrp-pf-auc, one call per setting")
    args = parser.parse_args()
    os.environ.setdefault(data.MIRROR_ENV, str(data.checkout_mirror()))
    x = data.load_image(data.image_set("castle")[0].path)
    model = models.vgg16(weights="random", seed=0)
    target = torch.tensor([483])
    chosen = [list(sweeps.SWEEPS.values())[int(i) - 1] for i in args.sweeps.split(",")]

    methods = {}
    for s in chosen:
        methods[f"{s.key} batched"] = (lambda c: lambda: lrp.relevance(model, x, target, c, chunk_size=args.chunk_size))(
            s.composite(VALUES))
        methods[f"{s.key} one by one"] = (lambda s: lambda: [lrp.relevance(model, x, target, s.composite(v))
                                                             for v in VALUES.tolist()])(s)
        if args.thesis_code:
            methods[f"{s.key} thesis code"] = thesis_code_loop(model, x, ORACLE[s.key], VALUES)
    lrp.relevance(model, x, target, chosen[0].composite(0.25))  # warm-up
    times = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device=cpu ({torch.get_num_threads()} threads), dtype=float32, repeats={args.repeats}, random VGG-16, "
          f"castle, {len(VALUES)} settings per sweep, chunk size {args.chunk_size}, load average {load:.1f}")
    for name, t in med.items():
        print(f"  {name:28s} {t:8.2f} s  ({t / len(VALUES):.2f} s per setting)")
    for name in (s.key for s in chosen):
        ratio = med[f"{name} one by one"] / med[f"{name} batched"]
        line = f"{name:17s}: one by one / batched = {ratio:5.2f}x"
        if args.thesis_code:
            line += f";  thesis code / batched = {med[f'{name} thesis code'] / med[f'{name} batched']:5.2f}x"
        print(line)
    total = sum(med[f"{s.key} one by one"] for s in chosen) / sum(med[f"{s.key} batched"] for s in chosen)
    print(f"all {len(chosen)} sweeps: one by one / batched = {total:5.2f}x")


if __name__ == "__main__":
    main()
