"""Plot helpers of the Pixel-Flipping chapter (lrpkit.plotting) and the damage mask of inpainting.

Each drawing is read back from matplotlib's artists and compared with an independent computation:
the legend's AUC with ``pf.auc``, the filled polygon's area with the shoelace formula, the pixels of
the panels with the inputs.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lrpkit import data, inpainting, pf, plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def shoelace(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def test_image_rgb_inverts_normalize():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    x = data.normalize(rgb)                                   # float32 [1, 3, H, W]
    assert np.array_equal(plotting.image_rgb(x), rgb)
    assert np.array_equal(plotting.image_rgb(x[0].double().numpy()), rgb)
    gray = torch.full((3, 2, 2), 0.0)                         # the normalized mean: ImageNet's mean colour
    assert plotting.image_rgb(gray)[0, 0].tolist() == [124, 116, 104]
    with pytest.raises(ValueError, match=r"shape \[C, H, W\]"):
        plotting.image_rgb(torch.zeros(2, 3, 4, 4))


def test_mask_overlay_paints_exactly_the_mask():
    rgb = np.random.default_rng(1).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3] = True
    out = plotting.mask_overlay(rgb, mask)
    assert (out[mask] == [255, 0, 0]).all()
    assert np.array_equal(out[~mask], rgb[~mask])
    assert not np.shares_memory(out, rgb)
    with pytest.raises(ValueError, match="mask has shape"):
        plotting.mask_overlay(rgb, mask[:5])


def test_pf_curve_legend_and_fill_are_the_auc_of_the_mean():
    scores = torch.tensor([[3.0, 2.0, 2.5, 0.5, 0.0], [1.0, 1.5, 0.5, 0.5, -1.0]], dtype=torch.float64)
    fig, ax = plt.subplots()
    area = plotting.pf_curve(ax, scores, label="MoRF")
    expected = float(pf.auc(scores).mean())                    # the thesis's AUC of the batch-mean curve
    assert area == pytest.approx(expected, abs=1e-12)
    assert ax.get_legend().get_texts()[0].get_text() == f"MoRF, AUC={expected:.4g}"
    lines = ax.get_lines()
    assert len(lines) == 3                                      # two gray rows, then the mean
    assert np.allclose(lines[-1].get_ydata(), scores.mean(0).numpy())
    # the fill is the polygon between the mean curve and y = 0: for a curve above zero its area is the AUC
    positive = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    fig2, ax2 = plt.subplots()
    plotting.pf_curve(ax2, positive, fill="wheat")
    assert shoelace(ax2.collections[0].get_paths()[0].vertices) == pytest.approx(float(pf.auc(positive)[0]))


def test_pf_curve_one_row_has_no_gray_lines_and_rejects_nan():
    fig, ax = plt.subplots()
    plotting.pf_curve(ax, np.array([1.0, 0.5, 0.0]), fill=None)
    assert len(ax.get_lines()) == 1 and not ax.collections
    with pytest.raises(ValueError, match="NaN"):
        plotting.pf_curve(ax, np.array([1.0, np.nan]))


def test_perturbed_regions_and_comparison_show_the_inputs():
    mask = np.zeros((16, 16), bool)
    mask[:8, 8:] = True
    fig, ax = plt.subplots()
    plotting.perturbed_regions(ax, mask, 8)
    shown = ax.get_images()[0].get_array()
    red = plotting.PERTURBED_RGB
    assert red[0] > red[1] and red[0] > red[2]                 # a red
    assert (shown[mask] == red).all() and (shown[~mask] == 255).all()
    horizontal, vertical = ax.get_lines()                      # one grid line each way, between patches
    assert horizontal.get_ydata()[0] == 7.5 and vertical.get_xdata()[0] == 7.5
    rgb = np.full((16, 16, 3), 9, np.uint8)
    relevance = torch.zeros(1, 3, 16, 16)
    relevance[0, 0, 0, 0] = 1.0
    fig = plotting.pf_comparison(rgb, rgb // 2, relevance, mask, 8)
    images = [a.get_images()[0].get_array() for a in fig.axes]
    assert np.array_equal(images[0], rgb) and np.array_equal(images[1], rgb // 2)
    assert np.array_equal(images[2], plotting.heatmap_rgb(relevance))
    assert [a.get_title() for a in fig.axes][3] == "perturbed regions"


def test_flips_per_step_annotates_the_thesis_schedule():
    counts = pf.flip_schedule(784)
    flips = [0] + [b - a for a, b in zip([0] + counts, counts)] + [784]
    fig, ax = plt.subplots()
    plotting.flips_per_step(ax, flips)
    labels = [t.get_text() for t in ax.texts]
    assert labels[:4] == ["0", "1", "3", "5"] and labels[-2:] == ["55", "784"]
    assert ax.get_title() == "total number of flips: 1568"        # thesis Fig. 3.8
    with pytest.raises(ValueError, match="counts >= 0"):
        plotting.flips_per_step(ax, [0, -1])


def test_damage_mask_is_seeded_binary_and_inpaintable():
    a = inpainting.damage_mask(64, 48, strokes=5, thickness=2, text="ab", seed=3)
    assert a.dtype == np.uint8 and a.shape == (64, 48) and set(np.unique(a)) == {0, 255}
    assert np.array_equal(a, inpainting.damage_mask(64, 48, strokes=5, thickness=2, text="ab", seed=3))
    assert not np.array_equal(a, inpainting.damage_mask(64, 48, strokes=5, thickness=2, text="ab", seed=4))
    assert 0.02 < (a > 0).mean() < 0.6
    assert not inpainting.damage_mask(8, 8, strokes=0).any()
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    out = inpainting.telea(image, a)
    assert np.array_equal(out[a == 0], image[a == 0])          # Telea leaves undamaged pixels alone
    with pytest.raises(ValueError, match="thickness must be an int >= 1"):
        inpainting.damage_mask(8, 8, thickness=0)
