"""Training steps of the ground-truth chapter's network (VGG-16's layout at a quarter of its widths,
64 px, batches of 32, AdamW) with the input and weights in the standard (NCHW) and the channels-last
layout, side by side in alternating rounds on the same machine: why :func:`lrpkit.training.train`
trains channels-last on the CPU.

    python bench/training_layout.py [--steps 40] [--rounds 3]
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

from lrpkit import training


def seconds_per_image(channels_last: bool, steps: int, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = training.build_network(6).train()
    x, y = torch.randn(batch, 3, 64, 64), torch.randint(0, 6, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(steps + 3):                  # 3 warm-up steps
        if step == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / (steps * batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per round and layout")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    times = {"standard": [], "channels-last": []}
    for _ in range(args.rounds):
        for name in times:
            times[name].append(seconds_per_image(name == "channels-last", args.steps))
    best = {name: min(t) for name, t in times.items()}
    for name, t in best.items():
        print(f"  {name:14s} {t * 1e3:6.2f} ms per image ({best['standard'] / t:.2f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
