"""The six castle sweeps of thesis Figure 3.3: batched grid calls against one call per setting,
side by side in one run (machines are noisy: compare ratios, not seconds).

Each sweep runs 20 settings, {0} ∪ 19 values log-spaced in [1e-5, 10], with the thesis code's
composites and its zennit stabilizer, as the code's grid-search notebook runs them:

1. z^B + γ      z^B on layer 0, γ = v on every layer above (``thesis_code_uniform("gamma")``)
2. z^B + ε      the same with ε = v
3. composite γ  the code's LRP-Tutorial with γ = v on 1-16, ε = 0.25 (``thesis_code_tutorial``)
4. composite ε  γ = 0.25, ε = v on 17-30
5. uniform γ    γ = v on every layer above layer 0, which has no rule (``zbox=False``)
6. uniform ε    the same with ε = v

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

from lrpkit import composites, data, lrp, models

# the repository root: the independent oracles of oracles/, shared with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VALUES = torch.cat([torch.zeros(1), torch.logspace(-5, 1, 19)])  # Fig. 3.3's grid


def sweeps(values):
    """name → (factory of one setting's composite, composite of the whole sweep, thesis-code map name)."""
    def uniform(rule, zbox):
        return lambda v: composites.thesis_code_uniform(rule, **{rule: v}, zbox=zbox)
    table = {
        "z^B + γ": (uniform("gamma", True), "zbox_gamma"),
        "z^B + ε": (uniform("epsilon", True), "zbox_epsilon"),
        "composite γ": (lambda v: composites.thesis_code_tutorial(v, 0.25), "tutorial-gamma"),
        "composite ε": (lambda v: composites.thesis_code_tutorial(0.25, v), "tutorial-epsilon"),
        "uniform γ": (uniform("gamma", False), "uniform_gamma"),
        "uniform ε": (uniform("epsilon", False), "uniform_epsilon"),
    }
    return {name: (one, one(values), oracle) for name, (one, oracle) in table.items()}


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
    chosen = [list(sweeps(VALUES).items())[int(i) - 1] for i in args.sweeps.split(",")]

    methods = {}
    for name, (one, grid, oracle) in chosen:
        methods[f"{name} batched"] = (lambda c: lambda: lrp.relevance(model, x, target, c, chunk_size=args.chunk_size))(grid)
        methods[f"{name} one by one"] = (lambda f: lambda: [lrp.relevance(model, x, target, f(v))
                                                            for v in VALUES.tolist()])(one)
        if args.thesis_code:
            methods[f"{name} thesis code"] = thesis_code_loop(model, x, oracle, VALUES)
    lrp.relevance(model, x, target, chosen[0][1][0](0.25))  # warm-up
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
    for name, _ in chosen:
        ratio = med[f"{name} one by one"] / med[f"{name} batched"]
        line = f"{name:12s}: one by one / batched = {ratio:5.2f}x"
        if args.thesis_code:
            line += f";  thesis code / batched = {med[f'{name} thesis code'] / med[f'{name} batched']:5.2f}x"
        print(line)
    total = sum(med[f"{name} one by one"] for name, _ in chosen) / sum(med[f"{name} batched"] for name, _ in chosen)
    print(f"all {len(chosen)} sweeps: one by one / batched = {total:5.2f}x")


if __name__ == "__main__":
    main()
