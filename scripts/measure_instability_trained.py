"""lrpkit.diagnostics' thresholds on a trained network: false alarms on stabilized heatmaps, catches
under the thesis code's unsigned stabilizer.

A network trained by ``lrpkit train`` (VGG-16's layout on lrpkit's ground-truth task; the book trains
one under ``book/_generated/_networks/shapes/quick``), its recorded task's test images, target the true
class, float32, under:

- stabilized composites: LRP-Tutorial with lrpkit's tutorial, vanilla and zennit heuristics,
  Decreasing-γ (its default heuristic), the thesis code's LRP-Tutorial with its zennit stabilizer
  (``thesis_code_tutorial(0.25, 0.25, "zennit")``) and with Fig. 2.3's map (γ = 0);
- LRP-0 (``uniform("zero")``: no stabilizer; reported, not expected to be unflagged);
- the thesis code's unsigned shift ``z + 1e-6`` (``thesis_code_tutorial(0.25, 0.25, "shift")`` and
  Fig. 2.3's map), compared with the same map under the zennit stabilizer: a heatmap is *broken* where
  it differs from that reference by more than the reference's ``max |R|``.

Prints, per composite, how many heatmaps :func:`lrpkit.diagnostics.instability` flags, by which
criterion, and the distributions its thresholds rest on (Σ R over the target's logit and over the
output's size, ``max |R| / median``, ``max |R| / q99``, the sign balance of the largest region of
extreme ``|R|``); for the code's shift, every flagged or broken heatmap with independent signs:
its deviation from the zennit reference, its relevance mass accuracy against the ground-truth mask
next to the reference's, and ``Σ |R|`` over the logit next to the reference's.

    python scripts/measure_instability_trained.py FOLDER [--images N] [--batch B]

About 10 minutes on 2 CPU cores for 500 images.
"""
import argparse
import sys
from collections import Counter

import numpy as np
import torch
from tqdm.auto import tqdm

from lrpkit import composites, diagnostics, localisation, lrp, synthetic, training

SETTINGS = {
    "LRP-0 (no stabilizer)": lambda: composites.uniform("zero"),
    "LRP-Tutorial, tutorial": lambda: composites.tutorial(),
    "LRP-Tutorial, vanilla": lambda: composites.tutorial(heuristic="vanilla"),
    "LRP-Tutorial, zennit": lambda: composites.tutorial(heuristic="zennit"),
    "Decreasing-γ": lambda: composites.decreasing_gamma(),
    "thesis code zennit (0.25, 0.25)": lambda: composites.thesis_code_tutorial(0.25, 0.25, "zennit"),
    "thesis code zennit, Fig. 2.3 map": lambda: composites.thesis_code_tutorial(0.0, 0.25, "zennit"),
    "thesis code shift (0.25, 0.25)": lambda: composites.thesis_code_tutorial(0.25, 0.25, "shift"),
    "thesis code shift, Fig. 2.3 map": lambda: composites.thesis_code_tutorial(0.0, 0.25, "shift"),
}
#: the code's shift and the reference it is "broken" against
PAIRS = {"thesis code shift (0.25, 0.25)": "thesis code zennit (0.25, 0.25)",
         "thesis code shift, Fig. 2.3 map": "thesis code zennit, Fig. 2.3 map"}


def spread(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return f"{values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}" if len(values) else "-"


def criteria(report):
    met = Counter()
    for reason in report.reasons:
        if reason:
            met["conservation"] += "Σ R leaves" in reason
            met["patch"] += "patch holds" in reason
            met["concentration"] += "max |R| is" in reason
    return dict(met)


def explain(model, x, y, make, batch):
    parts = [lrp.explain(model, x[i:i + batch], y[i:i + batch], make()) for i in range(0, len(x), batch)]
    return lrp.Explanation(torch.cat([p.relevance for p in parts]), torch.cat([p.logits for p in parts]),
                           torch.cat([p.target for p in parts]), torch.cat([p.layer_sums for p in parts], 1),
                           parts[0].layers, parts[0].composite)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a trained network's folder (training.json, weights.pt)")
    parser.add_argument("--images", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    model = training.load_trained(args.folder)
    rec = training.recorded_config(args.folder)
    data = synthetic.generate(rec.task, args.images, seed=rec.seed, split="test")
    x, y, masks = data.normalized(), data.labels, data.masks
    print(f"trained network {args.folder}, {args.images} test images (seed {rec.seed}), float32, "
          f"{torch.get_num_threads()} threads")

    reports, heat, sums, mass = {}, {}, {}, {}
    for label, make in tqdm(SETTINGS.items(), desc="composites", leave=False):
        e = explain(model, x, y, make, args.batch)
        reports[label], heat[label] = diagnostics.instability(e), e.relevance.sum(1).double()
        size = torch.maximum(e.layer_sums[-1].double().abs(), e.logits.double().abs().amax(1))
        sums[label] = (e.layer_sums.double() / size, e.layer_sums[-1].double())
        mass[label] = localisation.relevance_mass_accuracy(heat[label], masks).numpy()

    print(f"\n{'composite':34s} flagged (first 100)  criteria met                          Σ R / size (min/med/max)"
          f"        max/median (min/med/max)   max/q99 max  largest-region balance (min/med/max)")
    for label, r in reports.items():
        flagged = r.unstable.numpy()
        scaled = sums[label][0].numpy()
        balance = [p[0].balance for p in r.patches if p]
        print(f"{label:34s} {flagged.sum():3d}/{len(r):<3d} ({flagged[:100].sum():3d}/100)   "
              f"{str(criteria(r)):36s}  {spread(np.r_[scaled.min(0), scaled.max(0)]):>24s}  {spread(r.peak):>24s}"
              f"   {float(r.concentration.max()):8.3g}  {spread(balance):>20s}")

    for shift, ref in PAIRS.items():
        a, b = heat[shift].flatten(1), heat[ref].flatten(1)
        deviation = ((a - b).abs().amax(1) / b.abs().amax(1)).numpy()
        broken = deviation > 1
        flagged = reports[shift].unstable.numpy()
        absolute = lambda label: (heat[label].abs().flatten(1).sum(1) / sums[label][1].abs()).numpy()
        print(f"\n{shift}: broken (deviation from {ref} > its max |R|) {broken.sum()}, flagged {flagged.sum()}, "
              f"both {(broken & flagged).sum()}; flagged, not broken {np.flatnonzero(flagged & ~broken).tolist()}; "
              f"broken, not flagged {np.flatnonzero(broken & ~flagged).tolist()}")
        print(f"  {'image':>5s} {'flag':>4s} {'deviation':>9s} {'mass acc.':>9s} {'(ref)':>6s} {'Σ|R|/logit':>10s} {'(ref)':>6s}  reason")
        sa, sb = absolute(shift), absolute(ref)
        for i in np.flatnonzero(broken | flagged):
            print(f"  {i:5d} {'yes' if flagged[i] else 'no':>4s} {deviation[i]:9.3g} {mass[shift][i]:9.3f} {mass[ref][i]:6.3f} "
                  f"{sa[i]:10.3g} {sb[i]:6.3g}  {reports[shift].reasons[i] or '-'}")


if __name__ == "__main__":
    sys.exit(main())
