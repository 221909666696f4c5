"""The measurements behind lrpkit.diagnostics' thresholds, and the mechanism of the patches.

Random VGG-16 (``models.vgg16(weights="random", seed=0)``, the weights of ``torch.manual_seed(0);
torchvision.models.vgg16()``), float32, target = the predicted class, on the castle and the 84
ImageNet samples of the data mirror, under:

- the thesis code's early vanilla: Fig. 2.3's rule map (z^B; γ = 0 on 1-16; ε = 0.25 on 17-30;
  LRP-0 from 31), winner-takes-all pooling, its unsigned stabilizer ``z + 1e-6``
  (``composites.thesis_code_tutorial(0, 0.25, "shift")``);
- the same code with its zennit stabilizer (``"zennit"``), the reference a heatmap is "broken"
  against: more than its own largest value away from it;
- lrpkit's three heuristics (vanilla, zennit, tutorial) with LRP-Tutorial and with Fig. 2.3's map.

Prints, per setting, how many heatmaps :func:`lrpkit.diagnostics.instability` flags and the
distributions its thresholds rest on; for the code's vanilla, which layer breaks conservation and,
for every flagged heatmap, the neuron :func:`lrpkit.diagnostics.culprits` names (pre-activation,
z, the code's forward factor, gain, receptive field).

    python scripts/measure_instability.py [--limit N] [--no-culprits]

About 15 minutes on 2 CPU cores for all 85 images.
"""
import argparse
import os
import sys
from collections import Counter

import numpy as np
import torch
from tqdm.auto import tqdm

from lrpkit import composites, data, diagnostics, lrp, models

SETTINGS = {
    "thesis code vanilla (shift), Fig. 2.3 map": lambda: composites.thesis_code_tutorial(0.0, 0.25, "shift"),
    "thesis code zennit, Fig. 2.3 map": lambda: composites.thesis_code_tutorial(0.0, 0.25, "zennit"),
    **{f"lrpkit {h}, {name}": (lambda h=h, g=g: composites.tutorial(g, 0.25, heuristic=h))
       for h in ("vanilla", "zennit", "tutorial") for name, g in (("LRP-Tutorial", 0.25), ("Fig. 2.3 map", 0.0))},
}
CODE, REFERENCE = list(SETTINGS)[:2]


def images(limit):
    records = data.image_set("castle") + data.image_set("imagenet-samples")
    records = records[:limit] if limit else records
    names = ["castle.jpg" if r.file == "castle.jpg" else r.class_name for r in records]
    return names, torch.cat([data.load_image(r.path) for r in records])


def spread(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return f"{values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}" if len(values) else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (default: all 85)")
    parser.add_argument("--no-culprits", action="store_true", help="skip the neuron search (about 3 minutes)")
    args = parser.parse_args()
    os.environ.setdefault(data.MIRROR_ENV, str(data.checkout_mirror()))
    names, x = images(args.limit)
    model = models.vgg16(weights="random", seed=0)
    print(f"random VGG-16 (seed 0), float32, {len(names)} images, {torch.get_num_threads()} threads")

    reports, heatmaps = {}, {}
    for label, make in SETTINGS.items():
        parts = [lrp.explain(model, x[i:i + 8], None, make()) for i in
                 tqdm(range(0, len(x), 8), desc=label, unit="batch", leave=False)]
        explanation = lrp.Explanation(torch.cat([p.relevance for p in parts]), torch.cat([p.logits for p in parts]),
                                      torch.cat([p.target for p in parts]), torch.cat([p.layer_sums for p in parts], 1),
                                      parts[0].layers, parts[0].composite)
        reports[label], heatmaps[label] = diagnostics.instability(explanation), explanation.relevance.sum(1)

    reference = heatmaps[REFERENCE].flatten(1)
    broken = ((heatmaps[CODE].flatten(1) - reference).abs().amax(1) / reference.abs().amax(1) > 1).numpy()
    print(f"\nbroken: the code's vanilla heatmap differs from its zennit one by more than the latter's max |R|: "
          f"{broken.sum()} of {len(names)}")
    print(f"\n{'setting':44s} flagged  ratio min / median / max     max/q99 (min/med/max)   peak/median (min/med/max)"
          f"   largest patch share      top 0.1% share")
    for label, r in reports.items():
        ratios = r.ratios.numpy()
        largest = [p[0].share if p else 0.0 for p in r.patches]
        print(f"{label:44s} {int(r.unstable.sum()):3d}/{len(r):<3d} {spread(ratios.min(0)):>14s} | "
              f"{spread(ratios.max(0)):>14s}  {spread(r.concentration):>20s}  {spread(r.peak):>24s}  "
              f"{spread(largest):>20s}  {spread(r.top_share):>18s}")

    code = reports[CODE]
    flagged = code.unstable.numpy()
    print(f"\nthe code's vanilla: flagged {flagged.sum()}, of them broken {(flagged & broken).sum()}; "
          f"broken but not flagged {(broken & ~flagged).sum()}; flagged but not broken {(flagged & ~broken).sum()}")
    print("  first layer out of the conservation band:",
          dict(sorted(Counter(code.first_layer[i] for i in range(len(names)) if flagged[i]).items(),
                      key=lambda kv: (kv[0] is None, kv[0]))))
    caught = Counter()
    for i in np.flatnonzero(flagged):
        caught.update(part.split(" ")[0] + " " + part.split(" ")[1] for part in code.reasons[i].split("; "))
    print("  criteria met (a heatmap may meet several):", dict(caught))
    broken_peak = code.peak.numpy()[broken]
    print(f"  broken heatmaps: max ratio {spread(code.ratios.numpy().max(0)[broken])}, peak/median "
          f"{spread(broken_peak)} ({(broken_peak > diagnostics.PATCH_LEVEL).sum()} above {diagnostics.PATCH_LEVEL:g}), "
          f"max/q99 {spread(code.concentration.numpy()[broken])}")
    stable = [r for label, r in reports.items() if label != CODE]
    print(f"  the {sum(len(r) for r in stable)} stabilized heatmaps: ratio "
          f"{spread(np.concatenate([r.ratios.numpy().ravel() for r in stable]))}, max/q99 max "
          f"{max(float(r.concentration.max()) for r in stable):.3g}, peak/median max "
          f"{max(float(r.peak.max()) for r in stable):.3g}, top 0.1% share max "
          f"{max(float(r.top_share.max()) for r in stable):.3g}")
    for name in ("castle.jpg", "common newt", "indigo bunting"):
        if name in names:
            i = names.index(name)
            print(f"  {name}: {code.verdict(i)}")

    if args.no_culprits:
        return
    print("\nculprits (the code's vanilla, flagged heatmaps): the neuron with the largest gain")
    rows = []
    for i in tqdm(np.flatnonzero(flagged), desc="culprits", unit="image", leave=False):
        c = diagnostics.culprits(model, x[i:i + 1], SETTINGS[CODE](), count=1)[0]
        rows.append(c)
        top, left, bottom, right = c.box
        print(f"  {names[i][:26]:26s} layer {c.layer:2d} ({c.rule}) unit {c.unit}: pre-activation {c.preactivation:.7g}, "
              f"z {c.z:.3g}, factor {c.factor:.3g}, R {c.relevance:.3g}, sent {c.sent:.3g}, spread {c.spread:.3g}, "
              f"gain {c.gain:.3g}, field rows {top}-{bottom} cols {left}-{right}")
    z = np.array([c.z for c in rows])
    print(f"  layers: {dict(sorted(Counter(c.layer for c in rows).items()))}; rules: {dict(Counter(c.rule for c in rows))}")
    print(f"  z in (-1e-6, 0): {((z > -1e-6) & (z < 0)).sum()} of {len(rows)}; z {spread(z)}; factor "
          f"{spread([c.factor for c in rows])}; gain {spread([c.gain for c in rows])}; |sent / R| "
          f"{spread([abs(c.sent / c.relevance) for c in rows])}")
    baseline = [diagnostics.culprits(model, x[i:i + 1], SETTINGS[REFERENCE](), count=1)[0].gain
                for i in tqdm(range(len(names)), desc="culprits, zennit", unit="image", leave=False)]
    print(f"  the largest gain of any neuron under the code's zennit stabilizer, per image: {spread(baseline)}")


if __name__ == "__main__":
    sys.exit(main())
