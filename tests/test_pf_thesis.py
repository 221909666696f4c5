"""lrpkit.pf with ``thesis_compat=True`` against the thesis code itself (PyPI ``lrp-pf-auc`` 0.1.6).

The thesis code's modules are importable as ``pf``, ``lrp`` and ``data_loader``; it is a test-only
reference. Scores agree to 1e-4 of the curve's scale; the remaining differences (~1e-7) come from
scoring the steps in other batch compositions.
"""
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from lrpkit import data
from lrpkit import pf as lpf

thesis_core = pytest.importorskip("pf.core", reason="lrp-pf-auc (the thesis code) is not installed")
from pf.objectives.constants import PixelFlippingObjectives  # noqa: E402  (thesis code)
from pf.perturbation_modes.constants import PerturbModes  # noqa: E402

ORDERS = {"morf": PixelFlippingObjectives.MoRF, "lrf": PixelFlippingObjectives.LRF,
          "random": PixelFlippingObjectives.RANDOM}
MODES = {"inpainting": PerturbModes.INPAINTING, "random": PerturbModes.RANDOM}
CASTLE = 483
# the thesis code moves its work to the GPU whenever there is one: put the model there too
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_dir() -> Path:
    try:
        return data.mirror_file("castle.jpg").parent
    except FileNotFoundError:
        pytest.skip("image mirror with castle.jpg not found (set LRPKIT_DATA_MIRROR)")


@pytest.fixture(scope="module")
def images():
    """Castle and axolotl, 224x224, normalized as the thesis code does (ToTensor, ImageNet Normalize)."""
    folder = data_dir()
    transform = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    castle = Image.open(folder / "castle.jpg").convert("RGB").resize((224, 224))
    axolotl = Image.open(next((folder / "imagenet-samples").glob("*axolotl*"))).convert("RGB").resize((224, 224))
    return torch.stack([transform(castle), transform(axolotl)]).to(DEVICE)


def run_thesis_code(model, x, relevance, order, mode, seed=0):
    """Scores [B, 30] and AUC from the thesis code.

    Run on one torch thread: its hundreds of tiny per-patch tensor operations otherwise wait on
    torch's thread pool, which on a busy 2-core machine makes it ~30x slower. Results do not change.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)  # its random order draws torch.randperm from the global generator
        flipper = thesis_core.PixelFlipping(perturbation_steps=29, perturbation_size=8, perturb_mode=MODES[mode],
                                            sort_objective=ORDERS[order])
        with torch.no_grad():
            flipper(x.clone(), relevance.clone(), lambda batch: model(batch)[:, CASTLE])
        return flipper.class_prediction_scores_n.double().cpu(), flipper.calculate_auc_score()
    finally:
        torch.set_num_threads(threads)


def assert_agree(ours, theirs, their_auc):
    scale = theirs.abs().max().item()
    torch.testing.assert_close(ours.scores, theirs, rtol=1e-4, atol=1e-4 * scale)
    assert ours.auc.mean().item() == pytest.approx(their_auc, rel=1e-4)  # theirs: AUC of the batch mean


def test_thesis_compat_agrees_with_lrp_pf_auc_on_vgg16(images):
    """Random-weight VGG-16 (no pretrained weights offline), castle, gradient x input heatmap, MoRF, inpainting."""
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval().to(DEVICE)
    castle = images[:1]
    x = castle.clone().requires_grad_(True)
    model(x)[:, CASTLE].sum().backward()
    relevance = (x.grad * castle).detach()
    theirs, their_auc = run_thesis_code(model, castle, relevance, "morf", "inpainting")
    ours = lpf.pixel_flipping(model, castle, relevance, CASTLE, thesis_compat=True)
    assert ours.flips_per_step == [0] + list(range(1, 56, 2)) + [784]
    assert_agree(ours, theirs, their_auc)


class SmallNet(torch.nn.Module):
    """A cheap random CNN: the thesis code's per-patch work, not the model, dominates these runs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        self.classifier = torch.nn.Linear(128, 1000)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("order, mode", [("lrf", "inpainting"), ("random", "inpainting"), ("morf", "random"),
                                         ("random", "random")])
def test_thesis_compat_agrees_on_other_orders_and_modes(images, order, mode):
    """Batch of two: the shared permutation, the batch's gray and the per-image random values."""
    if order == "random" and torch.cuda.is_available():
        pytest.skip("the thesis code draws its random order from the CUDA generator when a GPU is present")
    model = SmallNet().eval().to(DEVICE)
    relevance = torch.randn(images.shape, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    theirs, their_auc = run_thesis_code(model, images, relevance, order, mode)
    ours = lpf.pixel_flipping(model, images, relevance, CASTLE, order=order, mode=mode, thesis_compat=True)
    assert_agree(ours, theirs, their_auc)

