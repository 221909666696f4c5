"""LRP speed, measured side by side in one run (machines are noisy: compare ratios, not seconds).

Prints, per image: Gradient × Input, LRP-Tutorial (lrpkit) and the zennit oracle of the tests
(LRP-Tutorial reproduced exactly in zennit, ``tests/zennit_oracle.py``), and 16-setting (γ, ε) grids batched in one call
against the same 16 settings run one by one. A grid that varies ε needs every layer's transposed
product once per setting; the "convolution floor" times those products alone, so the loop's time
over it bounds what any such grid can gain. Methods are interleaved within each repetition and
the median is reported.

    python bench/lrp_speed.py [--device cpu|cuda] [--repeats 5] [--dtype float32]

Progress goes to stderr: the expected runtime up front (this machine's time of one LRP-Tutorial
pass times the measured cost of a round, :data:`ROUND_COST`), then a progress bar over the calls.

Random VGG-16 weights (pretrained weights make no difference to the cost).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lrpkit import composites, lrp  # noqa: E402


#: The cost of one call of each method in LRP-Tutorial passes (batch 1, float32), measured with this
#: script on a shared 2-core CPU as process time (CPU seconds, which other jobs disturb far less than
#: wall time): a constant for the estimate printed up front, not a result.
ROUND_COST = {
    "gradient_x_input": 0.55, "lrp_tutorial": 1.0,
    "grid16_gamma_batched": 4.3, "grid16_gamma_loop": 14.1,
    "grid16_epsilon_batched": 4.5, "grid16_epsilon_loop": 15.4,
    "grid16_diagonal_batched": 5.5, "grid16_diagonal_loop": 14.2,
    "zennit_oracle": 2.7, "grid16_convolution_floor": 3.3,
}


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def convolution_floor(model, x, settings):
    """The products alone that a grid varying ε must run: the forward pass, W⁺a and the classifier's
    transposed products once, then, for every setting, each convolution's transposed product (zᴮ's
    two, stacked) at batch 1, in the layout lrpkit uses. No rule, no element-wise work: a lower
    bound on the time of any grid that varies ε at layer 30 (LRP-Tutorial's ε block ends there)."""
    from lrpkit import canonical
    from lrpkit.lrp import _forward

    layers = canonical.layers(model)
    with torch.no_grad():
        acts = _forward(layers, x).activations
        linear = [l for l in layers if l.is_linear]
        convs, dense = [l for l in linear if l.kind == "conv"], [l for l in linear if l.kind == "linear"]
        outputs = {l.index: torch.rand_like(acts[l.index + 1]) for l in linear}
        weights = {l.index: torch.cat([l.weight.clamp(min=0), l.weight.clamp(max=0)], 1) if l.index == 0 else l.weight
                   for l in convs}

    def run():
        with torch.no_grad():
            acts = _forward(layers, x).activations
            for l in convs:  # W⁺a of LRP-Tutorial's γ layers 1-16
                if 1 <= l.index <= 16:
                    l.affine(acts[l.index], l.weight.clamp(min=0), None)
            for l in reversed(dense):  # the classifier sits above the first ε layer: once
                l.transpose(outputs[l.index], l.weight, acts[l.index].shape)
            for _ in range(settings):
                for l in reversed(convs):
                    a = acts[l.index]
                    shape = (1, a.shape[1] * (2 if l.index == 0 else 1), *a.shape[2:])
                    l.transpose(outputs[l.index], weights[l.index], shape)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-zennit", action="store_true", help="skip the zennit oracle")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = torchvision.models.vgg16().to(device, dtype).eval()
    x = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    target = torch.tensor([483], device=device)
    values = torch.cat([torch.zeros(1), torch.logspace(-4, 0, 15)]).to(device, dtype)  # Tables 4.2/4.3 grid
    tutorial = composites.tutorial()
    # 16-setting grids of thesis Table 4.3 (LRP-Tutorial): a row (γ varies, ε = 0.25), a column
    # (ε varies, γ = 0.25), and a diagonal where both vary at once.
    grids = {
        "gamma": dict(gamma=values, epsilon=0.25),
        "epsilon": dict(gamma=0.25, epsilon=values),
        "diagonal": dict(gamma=values, epsilon=values.flip(0)),
    }

    def one_by_one(setting):
        return lambda: [lrp.relevance(model, x, target, composites.tutorial(
            **{k: float(v[i]) if torch.is_tensor(v) else v for k, v in setting.items()})) for i in range(len(values))]

    methods = {
        "gradient_x_input": lambda: lrp.gradient_x_input(model, x, target),
        "lrp_tutorial": lambda: lrp.relevance(model, x, target, tutorial),
    }
    for name, setting in grids.items():
        methods[f"grid16_{name}_batched"] = (lambda c: lambda: lrp.relevance(model, x, target, c))(composites.tutorial(**setting))
        methods[f"grid16_{name}_loop"] = one_by_one(setting)
    if not args.no_zennit:
        from zennit_oracle import tutorial_oracle
        methods["zennit_oracle"] = lambda: tutorial_oracle(model, x, target)

    methods["grid16_convolution_floor"] = convolution_floor(model, x, len(values))

    methods["lrp_tutorial"]()  # the first pass pays for allocations and kernel selection
    one_pass = statistics.median(timed(methods["lrp_tutorial"], device) for _ in range(3))
    rounds = args.repeats + 1  # a warm-up round, then the timed ones
    expected = one_pass * sum(ROUND_COST[name] for name in methods) * rounds
    print(f"expected runtime: about {_minutes(expected)} ({rounds} rounds of {len(methods)} methods; one "
          f"LRP-Tutorial pass takes {one_pass:.2f} s here, a round about {sum(ROUND_COST[n] for n in methods):.0f} "
          "of them)", file=sys.stderr, flush=True)
    times, warm_up = {name: [] for name in methods}, 0.0
    with tqdm(total=rounds * len(methods), desc="lrp_speed", unit="call", file=sys.stderr) as bar:
        for round_ in range(rounds):
            for name, fn in methods.items():
                bar.set_postfix_str(f"{'warm-up' if round_ == 0 else f'round {round_}'}: {name}")
                seconds = timed(fn, device)
                if round_ > 0:
                    times[name].append(seconds)
                warm_up += seconds if round_ == 0 else 0.0
                bar.update()
            if round_ == 0 and args.repeats > 0:
                bar.write(f"warm-up round took {_minutes(warm_up)}: about {_minutes(warm_up * args.repeats)} to go",
                          file=sys.stderr)
    med = {name: statistics.median(t) for name, t in times.items()}

    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})"
          f", dtype={args.dtype}, repeats={args.repeats}, random VGG-16, batch 1")
    for name, t in med.items():
        print(f"  {name:24s} {t:8.3f} s")
    gxi, tut = med["gradient_x_input"], med["lrp_tutorial"]
    print(f"LRP-Tutorial / Gradient×Input          = {tut / gxi:5.2f}x   (target <= 1.6x)")
    if "zennit_oracle" in med:
        print(f"zennit oracle / LRP-Tutorial           = {med['zennit_oracle'] / tut:5.2f}x   (target >= 3x)")
    for name in grids:
        ratio = med[f"grid16_{name}_loop"] / med[f"grid16_{name}_batched"]
        print(f"16 settings one by one / batched grid ({name:8s}) = {ratio:5.2f}x   (target >= 3x)")
    floor = med["grid16_convolution_floor"]
    print(f"16 settings one by one / convolution floor of a grid varying ε = "
          f"{med['grid16_epsilon_loop'] / floor:5.2f}x   (the most any ε or diagonal grid can reach here)")


def _minutes(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


if __name__ == "__main__":
    main()
