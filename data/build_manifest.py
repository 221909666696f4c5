"""Build data/images.tsv and data/sets.tsv from a folder holding SOURCES.tsv and imagenet_classes.tsv.

    python data/build_manifest.py ../shared/data

SOURCES.tsv lists file, sha256 and public URL of every image; imagenet_classes.tsv maps torchvision's
class index to wnid and name. The images' labels come from their file names
(``imagenet-samples/<wnid>_<name>.JPEG``); the thesis's castle.jpg is ImageNet class 483 (castle).
``random10`` is drawn once, with a fixed seed, from the samples not in another named set of one
file; the groups (``salamanders``) follow it.
tests/test_data.py checks that the committed files equal what this script writes.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: Named sets other than random10: set name -> file.
NAMED = {
    "castle": "castle.jpg",
    "castle2": "imagenet-samples/n02980441_castle.JPEG",
    "axolotl": "imagenet-samples/n01632777_axolotl.JPEG",
    "dalmatian": "imagenet-samples/n02110341_dalmatian.JPEG",
    "alp": "imagenet-samples/n09193705_alp.JPEG",
}
#: Named sets of several files, listed after random10 (they do not change its draw): set name -> files.
GROUPS = {
    # the axolotl (class 29) and the two salamander classes beside it (26, 28): the quick profile of
    # the grid experiment (thesis chapter 4), which cannot use the 50 axolotl validation images
    "salamanders": ["imagenet-samples/n01632777_axolotl.JPEG", "imagenet-samples/n01630670_common_newt.JPEG",
                    "imagenet-samples/n01632458_spotted_salamander.JPEG"],
}
RANDOM10_SEED = 2022
CASTLE_WNID = "n02980441"


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _write(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter="\t", lineterminator="\n").writerows(rows)
    return out.getvalue()


def build(source: Path) -> tuple[str, str]:
    """Text of images.tsv and sets.tsv built from the folder ``source``."""
    classes = {r["wnid"]: (int(r["index"]), r["name"]) for r in _tsv(source / "imagenet_classes.tsv")}
    images = [["file", "sha256", "source_url", "class_index", "wnid", "class_name"]]
    samples = []
    for row in _tsv(source / "SOURCES.tsv"):
        file = row["file"]
        wnid = CASTLE_WNID if file == "castle.jpg" else Path(file).name.split("_", 1)[0]
        index, name = classes[wnid]
        images.append([file, row["sha256"], row["source_url"], str(index), wnid, name])
        if file.startswith("imagenet-samples/"):
            samples.append(file)
    candidates = sorted(set(samples) - set(NAMED.values()))
    drawn = np.random.default_rng(RANDOM10_SEED).choice(len(candidates), size=10, replace=False)
    random10 = sorted(candidates[i] for i in drawn)
    sets = [["set", "file"]]
    sets += [[name, file] for name, file in NAMED.items()]
    sets += [["random10", file] for file in random10]
    sets += [[name, file] for name, files in GROUPS.items() for file in files]
    sets += [["imagenet-samples", file] for file in sorted(samples)]
    return _write(images), _write(sets)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    images, sets = build(Path(argv[0]))
    (HERE / "images.tsv").write_text(images, encoding="utf-8")
    (HERE / "sets.tsv").write_text(sets, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
