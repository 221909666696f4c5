"""Colour scalings of a heatmap (thesis Fig. 2.3c), checked against NumPy and the drawn pixels."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lrpkit import plotting  # noqa: E402


def patch_map(seed=0):
    """A [3, 64, 64] relevance: small noise everywhere and one 8×8 patch 1000× larger (the look of
    an instability patch), with one largest pixel."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 1e-3, (3, 64, 64))
    r[:, 20:28, 30:38] += rng.normal(0, 1.0, (3, 8, 8))
    r[0, 24, 34] = 50.0
    return r


def test_bounds_equal_their_definitions():
    r = patch_map()
    s = r.sum(0)
    assert plotting.scaling_bound(r, "cubic") == pytest.approx(10 * np.cbrt(np.mean(np.abs(s) ** 3)), rel=1e-12)
    assert plotting.scaling_bound(torch.from_numpy(r)[None], "max") == pytest.approx(np.abs(s).max(), rel=1e-12)
    ranked = np.sort(np.abs(s).ravel())
    q = plotting.scaling_bound(r, "quantile", 0.9)
    assert (ranked <= q).mean() == pytest.approx(0.9, abs=1 / ranked.size)
    # a patch dominates the cubic mean: its bound is far above the quantile of the noise
    assert plotting.scaling_bound(r, "quantile", 0.9) < 0.01 < plotting.scaling_bound(r, "cubic")


def saturated(ax):
    """Mask of an axes' heatmap pixels drawn in the colour map's end colours."""
    rgb = np.asarray(ax.images[0].get_array())[..., :3]
    ends = [np.asarray(plotting.LRP_CMAP(v, bytes=True)[:3]) for v in (0.0, 1.0)]
    return np.any([(rgb == e).all(-1) for e in ends], axis=0)


def test_plot_scalings_saturates_what_each_bound_cuts():
    r = patch_map()
    s = np.abs(r.sum(0))
    fig, axes = plt.subplots(1, 3)
    drawn = plotting.plot_scalings(r, axes, quantile=0.95)
    assert [label for label, _ in drawn] == ["10 · cubic mean of |R|", "max |R|", "0.95 quantile of |R|"]
    for ax, (_, bound) in zip(axes, drawn):
        assert f"{bound:.3g}" in ax.get_title()
        # at or above the bound: the end colours; below it by more than one of the map's 256 bins: not
        bins = 2 / plotting.LRP_CMAP.N
        assert saturated(ax)[s >= bound].all() and not saturated(ax)[s < bound * (1 - bins)].any()
    assert saturated(axes[1]).sum() == 1                # max |R|: only the largest pixel
    assert (s >= drawn[2][1]).mean() == pytest.approx(0.05, abs=1 / s.size)
    plt.close(fig)


def test_plot_heatmap_draws_the_image_over_the_heatmap():
    r = patch_map()
    image = np.full((64, 64, 3), 0.5)
    fig, ax = plt.subplots()
    plotting.plot_heatmap(ax, r, image=image, alpha=0.2, title="t")
    assert len(ax.images) == 2 and ax.images[1].get_alpha() == 0.2 and ax.get_title() == "t"
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), plotting.heatmap_rgb(r))
    plt.close(fig)


@pytest.mark.parametrize("call, match", [
    (lambda: plotting.scaling_bound(np.ones((4, 4)), "median"), "unknown scaling 'median'; choose one of"),
    (lambda: plotting.scaling_bound(np.ones((4, 4)), "quantile", 1.5), r"quantile must be a number in \(0, 1\], got 1.5"),
    (lambda: plotting.scaling_bound(np.full((4, 4), np.nan), "max"), "NaN"),
    (lambda: plotting.plot_scalings(np.ones((4, 4)), [None, None]), "draws 3 panels"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_outline_mask_follows_the_edges_of_the_mask_pixels():
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:8, 6:12] = True                       # rows 4-7, columns 6-11
    fig, ax = plt.subplots()
    plotting.outline_mask(ax, torch.from_numpy(mask))
    assert len(ax.collections) == 2              # the halo, then the line
    points = np.concatenate([p.vertices for p in ax.collections[1].get_paths()])
    # halfway between the centres of the outermost mask pixels and of their neighbours outside
    np.testing.assert_array_equal(points.min(0), [5.5, 3.5])     # (x, y): column 5.5, row 3.5
    np.testing.assert_array_equal(points.max(0), [11.5, 7.5])
    plotting.outline_mask(ax, np.zeros((16, 16)))                 # empty: nothing drawn
    assert len(ax.collections) == 2
    with pytest.raises(ValueError, match=r"mask must have shape \[H, W\], not \[1, 16, 16\]"):
        plotting.outline_mask(ax, mask[None])
    plt.close(fig)
