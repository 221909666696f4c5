"""The smoke book built with other VGG-16 weights than the book's seed 0: another seed, and biases
drawn N(-0.02, 0.1) as a trained network has non-zero biases.

A notebook may assert only what holds for any weights (oracles, identities, a check's own
consistency); which image breaks, where an optimum lies or how much the biases absorb is measured
and worded. A notebook that asserted an outcome of seed 0 stops this build. The published build uses
the pretrained weights, which cannot be had here: these weights stand in for "weights we did not
tune the book to".
"""
from pathlib import Path

import pytest
import torch
import torchvision

from lrpkit import book

from test_book_site import copy_book

pytestmark = pytest.mark.timeout(3000)   # the whole smoke book in one test


def other_vgg16(path: Path, seed: int = 7) -> Path:
    torch.manual_seed(seed)
    model = torchvision.models.vgg16()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1 - 0.02)
    torch.save(model.state_dict(), path)
    return path


def test_the_smoke_book_builds_with_other_weights(tmp_path):
    (tmp_path / "book").mkdir()
    root = copy_book(tmp_path / "book")
    weights = other_vgg16(tmp_path / "vgg16-other.pth")
    summary = book.build(root, profile="smoke", device="cpu", weights=str(weights), progress=False)
    assert sorted(summary["executed"]) == sorted(f.id for f in book.load_registry(root))
    assert (root / "_build" / "html" / "index.html").is_file()
    # the pages read the other weights: the provenance names the file, not random weights
    page = (root / "_build" / "html" / "book" / "when-lrp-breaks.html").read_text(encoding="utf-8")
    record = book.provenance_record(page)
    assert record["weights"]["path"] == weights.name and not record["random_weights"]
