"""Speed of the ground-truth image task (lrpkit.synthetic): images per second, one process, on the CPU.

For 1000 images at 64 px (the task's default) and at 224 px (VGG's ImageNet input):

- ``generate``: the whole task (photo crops, 1-3 distractors, the deciding object and its mask);
- ``backgrounds``: the photo crops alone, the floor of any implementation that cuts and resizes
  the photos the same way (``generate / backgrounds`` is what drawing the objects costs on top).

The photos are decoded once per size before timing (reported as set-up). The methods and sizes are
interleaved within each repetition; the best (least disturbed) and the median are reported, with
the load average before and after (machines are noisy: compare the ratio, and read the load).

    python bench/synthetic_speed.py [--repeats 5] [--count 1000] [--threads N]
"""
import argparse
import os
import statistics
import time

import torch

from lrpkit import data, synthetic

SIZES = (64, 224)
#: What "thousands of images per second on a CPU" (the task's issue) asks of ``generate``.
TARGET = 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="images per call")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault(data.MIRROR_ENV, str(data.checkout_mirror()))
    before = os.getloadavg()
    print(f"device=cpu ({torch.get_num_threads()} torch threads; {os.cpu_count()} cores), dtype=float32, "
          f"{args.count} images per call, repeats={args.repeats}; load average before {before[0]:.2f} "
          f"(5 min {before[1]:.2f})", flush=True)

    configs = {size: synthetic.TaskConfig(size=size) for size in SIZES}
    for size, config in configs.items():
        start = time.perf_counter()
        synthetic.generate(config, 8, seed=0)        # decodes and caches the photos at this size
        print(f"set-up {size} px: photos decoded in {time.perf_counter() - start:.2f} s", flush=True)

    methods = {"generate": lambda c, seed: synthetic.generate(c, args.count, seed=seed),
               "backgrounds": lambda c, seed: synthetic.backgrounds(c, args.count, seed=seed)}
    times = {(size, name): [] for size in SIZES for name in methods}
    for repeat in range(args.repeats + 1):        # round 0 warms the allocator up and is not counted
        for size, config in configs.items():
            for name, fn in methods.items():
                start = time.perf_counter()
                fn(config, repeat)
                if repeat > 0:
                    times[size, name].append(time.perf_counter() - start)
    after = os.getloadavg()

    print(f"\n{'size':>6} {'method':<12} {'best img/s':>11} {'median img/s':>13}")
    for (size, name), seconds in times.items():
        best, median = args.count / min(seconds), args.count / statistics.median(seconds)
        print(f"{size:>5}px {name:<12} {best:>11,.0f} {median:>13,.0f}")
    print()
    for size in SIZES:
        rate = args.count / statistics.median(times[size, "generate"])
        ratio = statistics.median(times[size, "generate"]) / statistics.median(times[size, "backgrounds"])
        print(f"{size:>3} px: generate {rate:,.0f} images/s (target >= {TARGET:,}); "
              f"generate / backgrounds = {ratio:.2f}x")
    print(f"\nload average after {after[0]:.2f} (5 min {after[1]:.2f})")


if __name__ == "__main__":
    main()
