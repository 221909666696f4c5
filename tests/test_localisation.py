"""lrpkit.localisation: the three scores against Quantus 0.6 on random heatmaps and masks, known
answers on constructed heatmaps, the tie rules, degenerate heatmaps and bad input."""
import doctest
import itertools
import warnings

import numpy as np
import pytest
import torch

from lrpkit import localisation
from lrpkit.localisation import pointing_game, relevance_mass_accuracy, relevance_rank_accuracy

N, C, H, W = 64, 3, 24, 32          # not square: a transposed mask would not fit
METRICS = {"mass": relevance_mass_accuracy, "rank": relevance_rank_accuracy, "pointing": pointing_game}


def random_masks(rng, n, h, w):
    """``[n, h, w]`` bool: rectangles and blobs (thresholded sums of Gaussian bumps), every one
    non-empty and covering at most 45 % of the image."""
    yy, xx = np.mgrid[:h, :w]
    masks = []
    while len(masks) < n:
        if len(masks) % 2:
            top, left = rng.integers(0, h - 1), rng.integers(0, w - 1)
            mask = np.zeros((h, w), bool)
            mask[top:top + rng.integers(1, h // 2 + 1), left:left + rng.integers(1, w // 2 + 1)] = True
        else:
            field = sum(np.exp(-((yy - rng.uniform(0, h)) ** 2 + (xx - rng.uniform(0, w)) ** 2)
                               / (2 * rng.uniform(1.5, 5.0) ** 2)) for _ in range(rng.integers(1, 4)))
            mask = field > rng.uniform(0.3, 0.8)
        if 0 < mask.sum() <= 0.45 * h * w:
            masks.append(mask)
    return np.stack(masks)


def random_relevance(rng, n, h, w, masks):
    """``[n, C, h, w]`` float64, continuous (no ties), mostly positive after the channel sum, with
    extra relevance on the mask for some heatmaps so that the pointing game both hits and misses."""
    relevance = rng.normal(0.3, 1.0, size=(n, C, h, w))
    relevance += (rng.uniform(0, 2.0, size=(n, 1, 1, 1)) * masks[:, None]) * (rng.uniform(size=(n, 1, 1, 1)) < 0.5)
    return relevance


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(20221)
    masks = random_masks(rng, N, H, W)
    return random_relevance(rng, N, H, W, masks), masks


@pytest.fixture(scope="module")
def quantus():
    return pytest.importorskip("quantus", reason="Quantus 0.6.0 (the oracle) is not installed")


def quantus_scores(quantus, heatmaps, masks, **options):
    """Quantus 0.6's three scores of pooled heatmaps ``[n, h, w]`` (numpy) with its array API."""
    n = len(heatmaps)
    batch = dict(model=None, x_batch=np.zeros((n, 1) + heatmaps.shape[1:]), y_batch=np.zeros(n, dtype=int),
                 a_batch=heatmaps[:, None].copy(), s_batch=masks[:, None].astype(float), batch_size=n)
    options = {"disable_warnings": True, **options}
    return {name: np.asarray(metric(**options)(**batch), dtype=np.float64)
            for name, metric in (("mass", quantus.RelevanceMassAccuracy), ("rank", quantus.RelevanceRankAccuracy),
                                 ("pointing", quantus.PointingGame))}


def numpy_pool(relevance, pooling):
    """The pooled heatmap in numpy, without lrpkit: CLEVR-XAI's ``pool_heatmap``."""
    summed = relevance.sum(axis=1)
    return {"sum,pos": np.maximum(summed, 0.0), "sum": summed, "sum,abs": np.abs(summed)}[pooling]


@pytest.mark.parametrize("pooling", localisation.POOLINGS)
def test_scores_equal_quantus_on_random_heatmaps(sample, quantus, pooling):
    """Quantus sees the pooled heatmap as ``a_batch`` and normalises nothing; ``"sum,abs"`` is its own
    ``abs=True`` on the channel sum, ``"sum,pos"`` is pooled before (Quantus has no switch for it)."""
    relevance, masks = sample
    if pooling == "sum,abs":
        expected = quantus_scores(quantus, relevance.sum(axis=1), masks, normalise=False, abs=True)
    else:
        expected = quantus_scores(quantus, numpy_pool(relevance, pooling), masks, normalise=False, abs=False)
    # no tie at the K-th place: every tie rule agrees with Quantus's argsort
    pooled = numpy_pool(relevance, pooling).reshape(N, -1)
    kth = -np.sort(-pooled, axis=1)[np.arange(N), masks.reshape(N, -1).sum(1) - 1]
    assert ((pooled == kth[:, None]).sum(1) == 1).all()
    for name, metric in METRICS.items():
        got = metric(torch.from_numpy(relevance), torch.from_numpy(masks), pooling=pooling)
        assert got.dtype == torch.float64 and got.shape == (N,)
        assert np.abs(got.numpy() - expected[name]).max() <= 1e-12, name
    # the sample is not trivial: the pointing game hits and misses, the other scores spread out
    assert 0.2 < expected["pointing"].mean() < 0.8
    assert expected["mass"].std() > 0.05 and expected["rank"].std() > 0.05


def test_quantus_defaults_are_the_raw_channel_sum(sample, quantus):
    """Quantus's default ``normalise=True`` (divide by the batch's largest |R|) changes none of the
    three scores: its defaults give ``pooling="sum"``."""
    relevance, masks = sample
    expected = quantus_scores(quantus, relevance.sum(axis=1), masks)
    for name, metric in METRICS.items():
        got = metric(torch.from_numpy(relevance), torch.from_numpy(masks), pooling="sum").numpy()
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-12, err_msg=name)


def test_batched_equals_one_by_one_in_every_accepted_form(sample):
    """``[N, C, H, W]`` equals ``[N, H, W]`` summed beforehand and each heatmap alone; one ``[H, W]``
    mask equals it repeated; 0/1 masks of any dtype and numpy masks equal bool tensors; flipping both image and
    mask changes no score; float32
    relevance is scored in float64."""
    relevance, masks = sample
    R, M = torch.from_numpy(relevance), torch.from_numpy(masks)
    for name, metric in METRICS.items():
        batched = metric(R, M)
        alone = torch.cat([metric(R[i:i + 1], M[i]) for i in range(N)])
        assert torch.equal(batched, alone), name
        assert torch.equal(metric(R.sum(1), M), batched), name
        assert torch.equal(metric(R, M.int()), batched) and torch.equal(metric(R, M.double()), batched), name
        assert torch.equal(metric(R, masks), batched), name
        flipped = metric(R.flip((2, 3)), masks[:, ::-1, ::-1])               # a numpy view with negative strides
        torch.testing.assert_close(flipped, batched, rtol=0, atol=1e-12)
        shared = metric(R, M[0])
        assert torch.equal(shared, metric(R, M[:1].expand(N, H, W))), name
        low = metric(R.float(), M)
        assert low.dtype == torch.float64
        torch.testing.assert_close(low, batched, rtol=0, atol=1e-5)


def test_known_answers_on_constructed_heatmaps():
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[1:3, 2:5] = True                                                   # K = 6
    ramp = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(2, 3)
    inside = torch.zeros(1, 6, 8, dtype=torch.float64)
    inside[0, 1:3, 2:5] = ramp                                              # all relevance on the object
    for metric in METRICS.values():
        assert metric(inside, mask).item() == 1.0
    outside = inside.clone()
    outside[0, 5, 7] = 7.0                                                  # the maximum off the object
    assert pointing_game(outside, mask).item() == 0.0
    assert relevance_mass_accuracy(outside, mask).item() == pytest.approx(21 / 28, abs=1e-15)
    assert relevance_rank_accuracy(outside, mask).item() == pytest.approx(5 / 6, abs=1e-15)
    # negative relevance off the object: ignored by "sum,pos", lowers the total of "sum", adds to "sum,abs"
    negative = inside.clone()
    negative[0, 5, :] = -1.0
    assert relevance_mass_accuracy(negative, mask).item() == 1.0
    assert relevance_mass_accuracy(negative, mask, pooling="sum").item() == pytest.approx(21 / 13, abs=1e-15)
    assert relevance_mass_accuracy(negative, mask, pooling="sum,abs").item() == pytest.approx(21 / 29, abs=1e-15)
    # uniform relevance: the mass accuracy is the mask's share of the image
    assert relevance_mass_accuracy(torch.ones(1, 6, 8, dtype=torch.float64), mask).item() == pytest.approx(6 / 48)
    # a full mask: every score is 1
    full = torch.ones(6, 8, dtype=torch.bool)
    for metric in METRICS.values():
        assert metric(outside, full).item() == 1.0


def rank_accuracy_of_order(heat, mask, order):
    """The plain rank accuracy when ties are broken by ``order`` (a permutation of the pixels), in numpy."""
    k = mask.sum()
    permuted = np.argsort(-heat[order], kind="stable")
    return mask[order][permuted[:k]].mean()


def test_rank_ties_share_the_places_as_the_mean_over_every_tie_break():
    """2 x 3 pixels with ties at the K-th place: lrpkit's score is the mean of the plain rank accuracy
    over all 720 orders of the pixels, and does not change when the image is flipped."""
    heat = np.array([[5.0, 2.0, 2.0], [2.0, 0.0, 2.0]])
    mask = np.array([[True, True, False], [False, False, True]])            # K = 3: 5 and two of four 2s
    flat_heat, flat_mask = heat.ravel(), mask.ravel()
    mean = np.mean([rank_accuracy_of_order(flat_heat, flat_mask, np.array(order))
                    for order in itertools.permutations(range(6))])
    got = relevance_rank_accuracy(torch.from_numpy(heat)[None], torch.from_numpy(mask)).item()
    assert got == pytest.approx(mean, abs=1e-15) and got == pytest.approx((1 + 2 * 2 / 4) / 3, abs=1e-15)
    flipped = relevance_rank_accuracy(torch.from_numpy(heat[::-1, ::-1].copy())[None],
                                      torch.from_numpy(mask[::-1, ::-1].copy())).item()
    assert flipped == got


def test_pointing_ties_hit_if_any_maximum_is_inside():
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    heat = torch.zeros(2, 4, 4, dtype=torch.float64)
    heat[:, 3, 3] = 1.0
    heat[0, 0, 0] = 1.0                      # heatmap 0: one of its two maxima inside
    heat[1, 0, 0] = 1.0 - 1e-12              # heatmap 1: just below the maximum
    assert pointing_game(heat, mask).tolist() == [1.0, 0.0]


def test_heatmaps_with_nothing_to_localise_score_nan_with_a_warning():
    """All zero, or (``"sum,pos"``) no positive relevance: NaN in every metric, the other heatmaps
    unchanged; a raw sum of 0 makes the mass accuracy NaN."""
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[:2, :2] = True
    heat = torch.rand(4, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    heat[1] = 0.0
    heat[3] = -heat[3]
    for name, metric in METRICS.items():
        with pytest.warns(RuntimeWarning, match=r"NaN for 2 of 4 heatmaps \(heatmap 1, 3\).*'sum,pos'"):
            got = metric(heat, mask)
        assert got.isnan().tolist() == [False, True, False, True], name
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(got[[0, 2]], metric(heat[[0, 2]], mask)), name
    with pytest.warns(RuntimeWarning, match=r"heatmap 1\)"):
        assert relevance_rank_accuracy(heat, mask, pooling="sum").isnan().tolist() == [False, True, False, False]
    balanced = torch.zeros(1, 5, 5, dtype=torch.float64)
    balanced[0, 0, 0], balanced[0, 4, 4] = 1.0, -1.0
    with pytest.warns(RuntimeWarning, match="relevance mass accuracy is NaN.*summing to 0"):
        assert relevance_mass_accuracy(balanced, mask, pooling="sum").isnan().all()


def test_errors_on_bad_input():
    R = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[1, 1] = True
    empty_second = mask.expand(2, 4, 5).clone()
    empty_second[1] = False
    cases = [
        (lambda: relevance_mass_accuracy(R, mask.T), ValueError,
         r"mask must be \[H, W\] = \[4, 5\] or \[N, H, W\] = \[2, 4, 5\] to fit the relevance, got shape \(5, 4\)"),
        (lambda: relevance_rank_accuracy(R, mask.expand(3, 4, 5)), ValueError, r"got shape \(3, 4, 5\)"),
        (lambda: pointing_game(R, torch.zeros(4, 5, dtype=torch.bool)), ValueError, "^mask is empty"),
        (lambda: relevance_mass_accuracy(R, empty_second), ValueError, "^mask of heatmap 1 is empty"),
        (lambda: relevance_mass_accuracy(R, mask * 0.7), ValueError, "boolean or hold only 0 and 1, got torch.float32 "
                                                                     "values such as 0.7"),
        (lambda: relevance_mass_accuracy(R, mask * 2), ValueError, "such as 2"),
        (lambda: relevance_mass_accuracy(R, "mask"), TypeError, "mask must be a tensor or array"),
        (lambda: relevance_mass_accuracy(R * float("nan"), mask), ValueError, "relevance contains NaN or Inf"),
        (lambda: relevance_rank_accuracy(R.masked_fill(R > 1, float("inf")), mask), ValueError, "NaN or Inf"),
        (lambda: pointing_game(R[0, 0], mask), ValueError, r"relevance must be \[N, H, W\] or \[N, C, H, W\]"),
        (lambda: pointing_game(R[:0], mask), ValueError, "no heatmap"),
        (lambda: pointing_game(R.long(), mask), TypeError, "floating-point"),
        (lambda: pointing_game(R.numpy(), mask), TypeError, "relevance must be a torch.Tensor"),
        (lambda: relevance_mass_accuracy(R, mask, pooling="pos"), ValueError, "unknown pooling 'pos'.*'sum,pos'"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            call()
        assert "\n" not in str(raised.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_scores_on_the_gpu_equal_those_on_the_cpu(sample):
    relevance, masks = sample
    R, M = torch.from_numpy(relevance), torch.from_numpy(masks)
    for name, metric in METRICS.items():
        got = metric(R.cuda(), M)                                           # the mask follows the relevance
        assert got.device.type == "cuda", name
        torch.testing.assert_close(got.cpu(), metric(R, M), rtol=0, atol=1e-12)


def test_module_example_runs():
    assert doctest.testmod(localisation).failed == 0
