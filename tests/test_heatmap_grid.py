"""plotting.heatmap_grid: the thesis code's grid of heatmap tiles under the image at alpha 0.2."""
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lrpkit import plotting  # noqa: E402


def tiles(fig):
    return [ax for ax in fig.axes if ax.images]


def test_tiles_show_each_heatmap_under_the_image():
    g = torch.Generator().manual_seed(0)
    relevance = torch.randn(7, 3, 16, 16, generator=g, dtype=torch.float64)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fig = plotting.heatmap_grid(relevance, image, [f"γ = {i}" for i in range(7)], ncols=5)
    try:
        axes = tiles(fig)
        assert len(fig.axes) == 10 and len(axes) == 7          # 2 rows x 5 columns, 3 left empty
        for i, ax in enumerate(axes):
            heat, over = ax.images
            np.testing.assert_array_equal(heat.get_array(), plotting.heatmap_rgb(relevance[i]))
            np.testing.assert_array_equal(over.get_array(), image)
            assert over.get_alpha() == 0.2 and ax.get_title() == f"γ = {i}"
    finally:
        plt.close(fig)


def test_rendered_tile_is_heatmap_and_image_blended_at_alpha():
    """What a reader sees: 0.8 x heatmap colour + 0.2 x image colour, in every tile."""
    relevance = torch.ones(2, 1, 8, 8)                        # all positive: saturated red
    image = np.full((8, 8, 3), (0, 200, 40), np.uint8)
    fig = plotting.heatmap_grid(relevance, image, ncols=2)
    try:
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
        red = plotting.heatmap_rgb(np.ones((8, 8)))[0, 0].astype(float)
        for ax in tiles(fig):
            box = ax.get_window_extent()
            row = int(pixels.shape[0] - (box.y0 + box.y1) / 2)
            col = int((box.x0 + box.x1) / 2)
            np.testing.assert_allclose(pixels[row, col], 0.8 * red + 0.2 * image[0, 0], atol=2)
    finally:
        plt.close(fig)


def test_verdict_marks_and_legend():
    relevance = np.random.default_rng(1).normal(size=(3, 12, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # a glyph missing from the font warns
        fig = plotting.heatmap_grid(relevance, None, ["a", "b", "c"], unstable=torch.tensor([False, True, False]))
        fig.canvas.draw()
    try:
        titles = [ax.title for ax in tiles(fig)]
        assert [t.get_text() for t in titles] == ["✓ a", "✗ b", "✓ c"]
        assert matplotlib.colors.to_hex(titles[1].get_color()) == plotting.UNSTABLE_COLOUR
        assert matplotlib.colors.to_hex(titles[0].get_color()) != plotting.UNSTABLE_COLOUR
        assert len(tiles(fig)[1].patches) == 1 and not tiles(fig)[0].patches   # the red frame
        assert any("flagged as numerically unstable" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("kwargs, match", [
    (dict(relevance=np.zeros((0, 4, 4))), r"one heatmap per tile"),
    (dict(image=np.zeros((5, 4, 3), np.uint8)), r"image must be RGB \[H, W, 3\] of the heatmaps' size \[4, 4\]"),
    (dict(titles=["a"]), r"titles has 1 entries for 2 heatmaps"),
    (dict(unstable=[True]), r"unstable has 1 entries for 2 heatmaps"),
    (dict(alpha=1.5), r"alpha must lie in \[0, 1\]"),
    (dict(ncols=0), r"ncols must be a positive int"),
])
def test_errors(kwargs, match):
    args = dict(relevance=np.ones((2, 4, 4)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plotting.heatmap_grid(args.pop("relevance"), **args)
