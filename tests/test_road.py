"""ROAD (lrpkit.imputation, lrpkit.road, pf mode "road"): the imputation against Quantus's
``noisy_linear_imputation`` with the noise off, the curves against an independent computation on a
linear model, an identity (a linear ramp imputes to itself), sharing, noise, and bad input."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lrpkit import imputation, pf, road

quantus_perturb = pytest.importorskip("quantus.functions.perturb_func")


def quantus_impute(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Quantus 0.6's imputation of the masked pixels of one [C, H, W] image, without noise."""
    return quantus_perturb.noisy_linear_imputation(image, np.flatnonzero(mask), noise=0.0)


def patch_mask(rng, grid, patch, fraction):
    return imputation.patch_mask_to_pixels(rng.random(grid) < fraction, patch, grid[0] * patch, grid[1] * patch)


# ------------------------------------------------------------------------------------------ imputation


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("patch", [1, 4])
def test_imputation_equals_quantus_without_noise(fraction, patch):
    rng = np.random.default_rng(int(fraction * 100) + patch)
    image = rng.normal(size=(3, 40, 48))
    mask = patch_mask(rng, (40 // patch, 48 // patch), patch, fraction)
    mask[0, 0] = mask[-1, -1] = True                     # corners: neighbours outside the image
    ours = imputation.impute(image, mask)
    assert np.abs(ours - quantus_impute(image, mask)).max() <= 1e-10
    assert np.array_equal(ours[:, ~mask], image[:, ~mask])            # the kept pixels are untouched


def test_imputed_pixel_is_the_weighted_mean_of_its_neighbours():
    """The defining equation of ROAD's imputation, checked on the solution at every removed pixel."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 12, 10))
    mask = rng.random((12, 10)) < 0.6
    mask[0, :] = True
    out = imputation.impute(image, mask)
    for r, c in zip(*np.nonzero(mask)):
        total, weight = 0.0, 0.0
        for dr, dc, w in imputation.NEIGHBOURS:
            if 0 <= r + dr < 12 and 0 <= c + dc < 10:
                total = total + w * out[:, r + dr, c + dc]
                weight += w
        np.testing.assert_allclose(out[:, r, c], total / weight, rtol=0, atol=1e-12)


def test_a_linear_ramp_imputes_to_itself_away_from_the_border():
    rows, cols = np.mgrid[0:32, 0:32]
    image = np.stack([0.3 * rows - 0.2 * cols + 1.0, 0.05 * rows, -0.1 * cols])
    mask = np.zeros((32, 32), bool)
    mask[4:12, 6:20] = mask[18:28, 3:9] = mask[20:24, 20:30] = True
    np.testing.assert_allclose(imputation.impute(image, mask), image, rtol=0, atol=1e-12)


def test_imputation_refuses_a_mask_of_every_pixel_and_wrong_shapes():
    image = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match="removes every pixel"):
        imputation.impute(image, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match=r"\[C, H, W\] image and an \[H, W\] mask"):
        imputation.impute(image, np.ones((8, 7), bool))


# ------------------------------------------------------------------------------------------ ROAD curves


class LinearScore(nn.Module):
    """Logits ``[w_k · x]`` of two classes: the relevance of class 0 is ``w_0 ⊙ x`` exactly."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.weights = nn.Parameter(weights, requires_grad=False)

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.weights)


def linear_case(seed=0, size=24, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(2, 3, size, size, generator=generator, dtype=dtype)
    x = torch.randn(2, 3, size, size, generator=generator, dtype=dtype)
    model = LinearScore(weights).eval()
    relevance = weights[0] * x                  # each image's exact contributions to logit 0
    return model, x, relevance, weights


def expected_road_curve(x, relevance, weights, order, percentages, patch):
    """The ROAD curve of one image, computed independently: patches ranked by numpy, each step's
    image imputed by Quantus, scored by the linear model."""
    _, height, width = x.shape
    grid = (height // patch, width // patch)
    scores = relevance.sum(0).reshape(grid[0], patch, grid[1], patch).sum(axis=(1, 3)).ravel()
    ranked = np.argsort(-scores if order == "morf" else scores, kind="stable")
    curve = [float((weights * x).sum())]
    for p in percentages:
        chosen = np.zeros(grid[0] * grid[1], bool)
        chosen[ranked[:round(p / 100 * chosen.size)]] = True
        mask = imputation.patch_mask_to_pixels(chosen.reshape(grid), patch, height, width)
        curve.append(float((weights * quantus_impute(x, mask)).sum()))
    return curve


@pytest.mark.parametrize("order", ["morf", "lrf"])
def test_road_curve_of_a_linear_model_equals_the_independent_computation(order):
    model, x, relevance, weights = linear_case()
    percentages = (10, 30, 50, 90)
    result = road.road(model, x, relevance, 0, order=order, percentages=percentages, patch_size=4, noise=0.0,
                       workers=0)
    for b in range(2):
        expected = expected_road_curve(x[b].numpy(), relevance[b].numpy(), weights[0].numpy(), order, percentages, 4)
        np.testing.assert_allclose(result.scores[b, :-1].numpy(), expected, rtol=1e-9, atol=1e-9)
    gray = torch.tensor([(0.5 - m) / s for m, s in zip(result.settings.mean, result.settings.std)], dtype=torch.float64)
    assert float(result.scores[0, -1]) == pytest.approx(float((weights[0] * gray.view(3, 1, 1)).sum()), rel=1e-9)


def test_pf_road_images_equal_quantus_in_float32():
    """The images the model scores (float32 input) against Quantus's imputation of every step's mask."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5)).eval()
    x = torch.randn(3, 3, 32, 32)
    relevance = torch.randn(3, 3, 32, 32)
    result = road.road(model, x, relevance, 1, percentages=(10, 50, 90), patch_size=4, noise=0.0,
                       keep_steps=range(5), keep_masks=True, workers=0)
    worst = 0.0
    for b in range(3):
        for step in (1, 2, 3):
            expected = quantus_impute(x[b].double().numpy(), result.masks[b, step].numpy())
            worst = max(worst, float(np.abs(result.images[step][b].double().numpy() - expected).max()))
    assert worst <= 1e-6


def test_percentages_become_patch_counts_and_the_curve_ends_gray():
    model, x, relevance, _ = linear_case()
    result = road.road(model, x[:1], relevance[:1], 0, percentages=(25, 50, 75), patch_size=6, noise=0.0)
    assert result.fraction_flipped == [0.0, 0.25, 0.5, 0.75, 1.0]          # 16 patches: 4, 8, 12, then all
    assert result.settings.mode == "road" and result.settings.auc_x == "fraction"
    assert road.percentage_schedule(784) == [78, 157, 235, 314, 392, 470, 549, 627, 706]


def test_curves_that_share_a_mask_share_its_imputation():
    """A heatmap repeated in a batch costs one heatmap's imputations; the random order one per image."""
    model, x, relevance, _ = linear_case()
    once = road.road(model, x[:1], relevance[:1], 0, patch_size=4, noise=0.0)
    thrice = road.road(model, x[:1].expand(3, -1, -1, -1), relevance[:1].expand(3, -1, -1, -1), 0, patch_size=4,
                       noise=0.0)
    assert thrice.n_inpainted == once.n_inpainted == 9 and thrice.n_forward == once.n_forward
    assert torch.equal(thrice.scores, once.scores.expand(3, -1))


def test_noise_is_seeded_gaussian_in_input_units_and_only_on_removed_pixels():
    model, x, relevance, _ = linear_case(size=48)
    kwargs = dict(percentages=(50,), patch_size=4, keep_steps=(1,), keep_masks=True)
    clean = road.road(model, x[:1], relevance[:1], 0, noise=0.0, **kwargs)
    noisy = road.road(model, x[:1], relevance[:1], 0, noise=0.05, seed=3, **kwargs)
    again = road.road(model, x[:1], relevance[:1], 0, noise=0.05, seed=3, **kwargs)
    other = road.road(model, x[:1], relevance[:1], 0, noise=0.05, seed=4, **kwargs)
    removed = noisy.masks[0, 1]
    difference = (noisy.images[1] - clean.images[1])[0]
    assert torch.equal(noisy.images[1], again.images[1]) and not torch.equal(noisy.images[1], other.images[1])
    assert float(difference[:, ~removed].abs().max()) == 0.0
    assert float(difference[:, removed].std()) == pytest.approx(0.05, rel=0.05)


def test_symmetric_relevance_gain_is_lrf_minus_morf_from_one_run():
    model, x, relevance, weights = linear_case()
    heatmaps = relevance
    gain = road.symmetric_relevance_gain(model, x, heatmaps, 0, patch_size=4, noise=0.0)
    morf = road.road(model, x, heatmaps, 0, order="morf", patch_size=4, noise=0.0)
    lrf = road.road(model, x, heatmaps, 0, order="lrf", patch_size=4, noise=0.0)
    torch.testing.assert_close(gain.morf.scores, morf.scores, rtol=0, atol=1e-12)
    torch.testing.assert_close(gain.srg, lrf.auc - morf.auc, rtol=0, atol=1e-12)
    # the exact contributions rank the pixels as the linear model uses them: removing the most
    # relevant first costs more score than removing the least relevant first
    assert (gain.srg > 0).all()
    pf_gain = road.symmetric_relevance_gain(model, x, heatmaps, 0, grader="pf", mode="gray", patch_size=4)
    torch.testing.assert_close(pf_gain.srg, pf_gain.lrf.auc - pf_gain.morf.auc)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("percentages, words", [
    ((0, 50), "percentages must lie in (0, 100)"),
    ((50, 100), "percentages must lie in (0, 100)"),
    ((-5,), "percentages must lie in (0, 100)"),
    ((50, 40), "strictly increasing"),
    ((), "percentages is empty"),
    ((10, 11), "round to the patch counts"),
])
def test_bad_percentages_are_one_line_errors(percentages, words):
    model, x, relevance, _ = linear_case()
    with pytest.raises(ValueError) as error:
        road.road(model, x[:1], relevance[:1], 0, percentages=percentages, patch_size=8)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_heatmap_of_the_wrong_shape_and_nan_relevance_are_one_line_errors():
    model, x, relevance, _ = linear_case()
    with pytest.raises(ValueError, match=r"relevance shape \(1, 3, 20, 24\) does not match x"):
        road.road(model, x[:1], relevance[:1, :, :20], 0)
    broken = relevance[:1].clone()
    broken[0, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="relevance contains NaN or Inf"):
        road.road(model, x[:1], broken, 0)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        road.road(model, x[:1], relevance[:1], 0, noise=-1.0, patch_size=2)
    with pytest.raises(TypeError, match="road\\(\\) sets schedule itself"):
        road.road(model, x[:1], relevance[:1], 0, schedule="thesis")
