"""Tests of lrpkit.pf: Pixel-Flipping / region perturbation and AUC.

Most tests use a linear model on the input, ``logit = <w, x> + b``, for which the effect of
removing a region is known exactly; the agreement with the thesis code (``lrp-pf-auc``) is in
``test_pf_thesis.py``.
"""
import math
import multiprocessing
import threading

import numpy as np
import pytest
import torch

from lrpkit import inpainting, pf
from lrpkit.imagenet import MEAN, STD


class Linear(torch.nn.Module):
    """Two-class linear model on the normalized input; class 0 has weights ``w`` and bias ``bias``."""

    def __init__(self, w: torch.Tensor, bias: float = 0.25):
        super().__init__()
        self.w = torch.nn.Parameter(torch.stack([w, -w]).reshape(2, -1).double(), requires_grad=False)
        self.b = torch.nn.Parameter(torch.tensor([bias, -bias], dtype=torch.float64), requires_grad=False)

    def forward(self, x):
        return (x.double().flatten(1) @ self.w.T + self.b).float()


def normalize_u8(u8: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(MEAN).view(-1, 1, 1)
    s = torch.tensor(STD).view(-1, 1, 1)
    return (u8.float() / 255.0 - m) / s


def objects_scene(size=64, patch=8, seed=0):
    """A uint8 image: constant background, with 4x4 bright squares in the middle of some patches.

    Inpainting a patch that holds a square fills it with the background (its neighbours), so the
    drop of a linear model whose weights sit on the squares equals the squares' relevance
    ``w * (x - background)``: the true relevance for every perturbation mode used below.
    """
    rng = np.random.default_rng(seed)
    img = np.full((3, size, size), 100, dtype=np.uint8)
    weights = np.zeros((3, size, size))
    cells = size // patch
    for i in range(1, cells - 1):           # keep away from the image border
        for j in range(1, cells - 1):
            if rng.random() < 0.5:
                y, x0 = i * patch + 2, j * patch + 2
                img[:, y:y + 4, x0:x0 + 4] = rng.integers(120, 256)
                weights[:, y:y + 4, x0:x0 + 4] = rng.uniform(0.2, 1.0)
    x = normalize_u8(torch.from_numpy(img))[None]
    background = normalize_u8(torch.full((3, 1, 1), 100, dtype=torch.uint8))
    w = torch.from_numpy(weights).float()
    relevance = (w * (x[0] - background))[None]
    return x, w, relevance


@pytest.fixture(scope="module")
def scene():
    x, w, relevance = objects_scene()
    return x, Linear(w).eval(), relevance


def expected_curve(model, x, relevance, order, patch, counts):
    """b + sum of the relevance of the patches not yet flipped, for every step of ``counts``.

    Computed independently of lrpkit: NumPy patch sums, stable argsort (ties by patch position).
    """
    rel = relevance[0].double().sum(0).numpy()
    h, w = rel.shape
    ps = rel.reshape(h // patch, patch, w // patch, patch).sum(axis=(1, 3)).ravel()
    idx = np.argsort(-ps if order == "morf" else ps, kind="stable")
    logit0 = model(x)[0, 0].item()
    return [logit0 - ps[idx[:c]].sum() for c in counts]


# ---------------------------------------------------------------------------------------------- orders


@pytest.mark.parametrize("mode", ["inpainting", "gray", "random"])
def test_morf_below_random_below_lrf(scene, mode):
    x, model, relevance = scene
    gray = MEAN if mode == "gray" else 0.5  # gray at the mean is 0 after normalization: exact removal
    res = {o: pf.pixel_flipping(model, x, relevance, 0, order=o, mode=mode, gray_value=gray, workers=0)
           for o in pf.ORDERS}
    assert res["morf"].auc.item() < res["random"].auc.item() < res["lrf"].auc.item()


def test_inpainting_removes_the_relevance(scene):
    """Objects on a flat background: every step's logit is b + the relevance still in the image.

    Exact up to OpenCV's Telea, which refills a flat background only to within a few grey levels,
    hence the tolerance of 5 % of the total relevance.
    """
    x, model, relevance = scene
    total = relevance.sum().item()
    for order in ("morf", "lrf"):
        res = pf.pixel_flipping(model, x, relevance, 0, order=order, mode="inpainting", workers=0)
        counts = pf.flip_schedule(64)
        expected = expected_curve(model, x, relevance, order, 8, counts)
        # steps 1..7; step 8 (all patches) is the gray image in lrpkit, not an inpainting
        np.testing.assert_allclose(res.scores[0, 1:len(counts)].numpy(), expected[:-1], rtol=0, atol=0.05 * total)


def test_gray_mode_scores_are_exact(scene):
    x, model, _ = scene
    w = model.w[0].reshape(x.shape[1:]).float()
    rel0 = w * x[0]  # relevance w.r.t. gray at the mean (0 after normalization)
    res = pf.pixel_flipping(model, x, rel0[None], 0, order="morf", mode="gray", gray_value=MEAN, workers=0)
    counts = pf.flip_schedule(64)
    expected = expected_curve(model, x, rel0[None], "morf", 8, counts)
    np.testing.assert_allclose(res.scores[0, 1:-1].numpy(), expected, rtol=0, atol=1e-4)
    assert res.scores[0, -1].item() == pytest.approx(0.25, abs=1e-5)  # all gray: only the bias is left


# ---------------------------------------------------------------------------------------------- schedule


def test_thesis_schedule_224_by_8():
    counts = pf.flip_schedule(784, "thesis")
    assert counts == [k * k for k in range(1, 29)]
    torch.manual_seed(0)
    w = torch.randn(3, 224, 224) * 1e-3
    x = torch.randn(1, 3, 224, 224).clamp(-2, 2)
    res = pf.pixel_flipping(Linear(w).eval(), x, w * x, 0, patch_size=8, mode="gray", keep_steps=[28, 29],
                            keep_masks=True, workers=0)
    assert res.flips_per_step == [0] + list(range(1, 56, 2)) + [784]
    assert res.scores.shape == (1, 30)
    assert res.auc.shape == (1,)
    # the last image is gray everywhere, and so is its mask
    gray = ((torch.tensor(0.5) - torch.tensor(MEAN)) / torch.tensor(STD)).view(3, 1, 1).expand(3, 224, 224)
    assert torch.equal(res.images[29][0], gray)
    assert res.masks[0, 29].all() and res.masks[0, 28].all() and not res.masks[0, 0].any()
    assert [int(m.sum()) for m in res.masks[0, :4]] == [0, 64, 4 * 64, 9 * 64]


def test_other_schedules():
    assert pf.flip_schedule(784, "linear", n_steps=4) == [196, 392, 588, 784]
    log = pf.flip_schedule(784, "log", n_steps=10)
    assert log[0] == 1 and log[-1] == 784 and all(b > a for a, b in zip(log, log[1:]))
    assert pf.flip_schedule(10, [2, 5, 10]) == [2, 5, 10]
    for bad in ([3, 3], [0, 4], [5, 11], []):
        with pytest.raises(ValueError, match="schedule"):
            pf.flip_schedule(10, bad)
    with pytest.raises(ValueError, match="unknown schedule"):
        pf.flip_schedule(10, "quadratic")
    assert pf.flip_schedule(10, (c for c in [2, 5])) == [2, 5]  # any iterable of ints, read once
    for bad in ([2.0, 5.0], (c for c in [2.0, 5.0]), [True]):
        with pytest.raises(TypeError, match="sequence of ints"):
            pf.flip_schedule(10, bad)


def test_uneven_patches_and_strict():
    torch.manual_seed(1)
    w = torch.randn(3, 30, 28)
    x = torch.randn(2, 3, 30, 28)
    res = pf.pixel_flipping(Linear(w).eval(), x, w * x, 0, patch_size=8, mode="gray", keep_masks=True, workers=0)
    assert res.patch_scores.shape == (2, 4, 4)               # ceil(30/8) x ceil(28/8): edge patches smaller
    assert res.flips_per_step[-1] == 16 and sum(res.flips_per_step[:-1]) == 16
    assert res.masks.shape == (2, len(res.flips_per_step), 30, 28) and res.masks[:, -2].all()
    # the edge patches are scored by the relevance they hold, nothing cropped
    assert torch.allclose(res.patch_scores.sum(dim=(1, 2)), (w * x).double().sum(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="does not divide"):
        pf.pixel_flipping(Linear(w).eval(), x, w * x, 0, patch_size=8, strict=True, workers=0)


# ---------------------------------------------------------------------------------------------- order details


def test_ties_are_broken_by_patch_position():
    scores = torch.zeros(1, 4, 4)
    scores[0, 2, 1] = 1.0
    morf = pf.flip_order(scores, "morf")[0].tolist()
    lrf = pf.flip_order(scores, "lrf")[0].tolist()
    assert morf == [9] + [i for i in range(16) if i != 9]
    assert lrf == [i for i in range(16) if i != 9] + [9]


def test_grayscale_patch_scores_weight_the_channels():
    rel = torch.zeros(1, 3, 2, 2)
    rel[0, 0] = 1.0                   # red only
    assert pf.patch_scores(rel, 2)[0, 0, 0].item() == 4.0
    assert pf.patch_scores(rel, 2, grayscale=True)[0, 0, 0].item() == pytest.approx(4 * 0.2989, rel=1e-6)


def test_random_order_is_seeded_per_image_and_ignores_the_heatmap():
    scores = torch.randn(3, 5, 5)
    a = pf.flip_order(scores, "random", seed=3, image_ids=[0, 0, 1])
    b = pf.flip_order(torch.randn(3, 5, 5), "random", seed=3, image_ids=[0, 0, 1])
    assert torch.equal(a, b)                              # heatmap does not matter
    assert torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    assert sorted(a[2].tolist()) == list(range(25))
    assert not torch.equal(a, pf.flip_order(scores, "random", seed=4, image_ids=[0, 0, 1]))
    shared = pf.flip_order(scores, "random", seed=3, shared_permutation=True)
    assert torch.equal(shared[0], shared[2])


# ---------------------------------------------------------------------------------------------- runs


def test_identical_run_to_run_and_seed_matters(scene):
    x, model, relevance = scene
    kwargs = dict(order="random", mode="random", workers=0)
    a = pf.pixel_flipping(model, x, relevance, 0, seed=5, **kwargs)
    b = pf.pixel_flipping(model, x, relevance, 0, seed=5, **kwargs)
    c = pf.pixel_flipping(model, x, relevance, 0, seed=6, **kwargs)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.order, b.order)
    assert not torch.equal(a.scores, c.scores)


def test_worker_pool_gives_the_same_numbers(scene):
    x, model, relevance = scene
    inline = pf.pixel_flipping(model, x, relevance, 0, workers=0, keep_steps=[3])
    pooled = pf.pixel_flipping(model, x, relevance, 0, workers=2, batch_size=3, keep_steps=[3])
    # the workers are threads of this process: nothing is forked from a process that has run OpenCV
    # and torch (a forked worker of such a process hung for an hour in CI)
    assert multiprocessing.active_children() == []
    assert any(t.name.startswith("lrpkit-inpainting") for t in threading.enumerate())
    assert torch.equal(inline.images[3], pooled.images[3])
    torch.testing.assert_close(inline.scores, pooled.scores, rtol=1e-6, atol=1e-6)
    again = pf.pixel_flipping(model, x, relevance, 0, workers=2, batch_size=3)
    assert torch.equal(again.scores, pooled.scores)              # identical run to run


def test_one_channel_inpainting():
    rng = np.random.default_rng(3)
    u8 = torch.from_numpy(rng.integers(0, 256, (1, 1, 24, 24), dtype=np.uint8))
    x = (u8.float() / 255 - 0.5) / 0.25
    w = torch.randn(1, 24, 24, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(576, 3)).eval()
    res = pf.pixel_flipping(model, x, w * x, 1, patch_size=6, mean=[0.5], std=[0.25], keep_steps=[2],
                            keep_masks=True, workers=0)
    assert res.scores.shape == (1, 6)                           # 16 patches: 4 steps, plus 0 and gray
    step2 = res.images[2][0, 0]
    assert torch.equal(step2[~res.masks[0, 2]], x[0, 0][~res.masks[0, 2]])
    assert not torch.equal(step2[res.masks[0, 2]], x[0, 0][res.masks[0, 2]])


def test_heatmaps_of_one_image_share_work(scene):
    """Rows with the same image share the unperturbed, the gray and every common step."""
    x, model, relevance = scene
    grid_rel = torch.cat([relevance, relevance.flip(-1), relevance * torch.rand_like(relevance), relevance])
    grid_x = x.expand(4, -1, -1, -1)
    one = [pf.pixel_flipping(model, x, r[None], 0, workers=0) for r in grid_rel]
    grid = pf.pixel_flipping(model, grid_x, grid_rel, 0, workers=0)
    for i in range(4):
        torch.testing.assert_close(grid.scores[i], one[i].scores[0], rtol=1e-6, atol=1e-6)
    assert grid.n_forward <= 3 * (one[0].n_forward - 2) + 2      # row 3 repeats row 0: free
    rand_one = pf.pixel_flipping(model, x, relevance, 0, order="random", workers=0)
    rand_grid = pf.pixel_flipping(model, grid_x, grid_rel, 0, order="random", workers=0)
    assert rand_grid.n_forward == rand_one.n_forward
    assert torch.equal(rand_grid.scores, rand_one.scores.expand(4, -1))


def distinct_masks(relevance, orders, patch, counts, seed=0):
    """Independently of lrpkit's planner: the set of distinct (patch mask) of every row and step.

    One image, so a mask identifies a perturbed image. MoRF/LRF by a stable NumPy argsort of the
    channel-summed patch relevance; the random order is the one lrpkit documents (a NumPy
    permutation seeded by (seed, 0, image index)), taken from ``pf.flip_order`` as a given.
    """
    masks = set()
    for rel, order in zip(relevance, orders):
        r = rel.double().sum(0).numpy()
        h, w = r.shape
        ps = r.reshape(h // patch, patch, w // patch, patch).sum(axis=(1, 3)).ravel()
        if order == "random":
            idx = np.random.default_rng([seed, 0, 0]).permutation(ps.size)
        else:
            idx = np.argsort(-ps if order == "morf" else ps, kind="stable")
        for c in counts:
            mask = np.zeros(ps.size, dtype=bool)
            mask[idx[:c]] = True
            masks.add(mask.tobytes())
    return masks


def test_several_orders_in_one_call_equal_one_call_per_order(scene):
    """Rows with different orders give each order's own curve, and shared images are scored once."""
    x, model, relevance = scene
    heatmaps = torch.cat([relevance, relevance.flip(-1), relevance.flip(-2)])           # 3 "settings"
    orders = ["morf"] * 3 + ["lrf"] * 3 + ["random"] * 3
    rows = torch.cat([heatmaps] * 3)
    together = pf.pixel_flipping(model, x.expand(9, -1, -1, -1), rows, 0, order=orders, workers=0)
    for i, order in enumerate(orders):
        alone = pf.pixel_flipping(model, x, rows[i:i + 1], 0, order=order, workers=0)
        torch.testing.assert_close(together.scores[i], alone.scores[0], rtol=1e-6, atol=1e-6)
        assert torch.equal(together.order[i], alone.order[0])
    assert torch.equal(together.scores[6], together.scores[8])            # random ignores the heatmap
    counts = pf.flip_schedule(64)                                            # 64x64 image, 8x8 patches
    partial = distinct_masks(rows, orders, 8, [c for c in counts if c < 64])
    assert together.n_inpainted == len(partial)
    assert together.n_forward == len(partial) + 2                          # + the original and gray
    assert pf.count_images(x.expand(9, -1, -1, -1), rows, order=orders) == (together.n_forward,
                                                                              together.n_inpainted)
    assert together.settings.order == tuple(orders)
    one_random = pf.pixel_flipping(model, x, relevance, 0, order="random", workers=0)
    assert together.n_forward <= 2 * 3 * (one_random.n_forward - 2) + one_random.n_forward


# ---------------------------------------------------------------------------------------------- the plan alone

# three rows on a 2x2 patch grid: rows 0 and 1 show image 0 with orders that agree on the first
# patch only; row 2 shows image 1 with row 0's order. Ranks: each patch's place in its row's order.
PLAN_IMAGES = [0, 0, 1]
PLAN_RANKS = np.array([[[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0, 1], [2, 3]]])
PLAN_COUNTS = [1, 2, 4]                   # the last step covers every patch


def flipped_sets(counts):
    """Independently of the planner: the distinct (image, set of flipped patches) below the full count."""
    return {(image, frozenset(np.flatnonzero(ranks.ravel() < c).tolist()))
            for image, ranks in zip(PLAN_IMAGES, PLAN_RANKS) for c in counts if c < PLAN_RANKS[0].size}


@pytest.mark.parametrize("mode", ["inpainting", "random", "gray"])
def test_plan_alone_shares_exactly_what_rows_have_in_common(mode):
    """The plan is a function of image ids, ranks and counts: no model, no image, no fill."""
    plan = pf._plan(PLAN_IMAGES, PLAN_RANKS, PLAN_COUNTS, mode, frozenset())
    again = pf._plan(PLAN_IMAGES, PLAN_RANKS, PLAN_COUNTS, mode, frozenset())
    assert plan.keys == again.keys and plan.row_keys == again.row_keys            # deterministic
    perturbed = flipped_sets(PLAN_COUNTS)                                          # 5 distinct images
    full = 0 if mode != "random" else 2            # a full mask: gray, but one noise image per image
    assert len(plan.keys) == 2 + 1 + len(perturbed) + full                         # + 2 originals and gray
    rows = plan.row_keys
    assert rows[0][0] == rows[1][0] != rows[2][0]                                  # originals per image
    assert rows[0][1] == rows[1][1] and rows[0][2] != rows[1][2]                   # same image, same mask
    assert rows[0][1] != rows[2][1]                                                # same mask, other image
    assert all(row[4] == ("gray",) for row in rows)                                # the last step
    assert all((row[3] == ("gray",)) == (mode != "random") for row in rows)        # the full step
    assert (rows[0][3] == rows[1][3] != rows[2][3]) == (mode == "random")
    assert plan.n_inpainted == (len(perturbed) if mode == "inpainting" else 0)
    if mode == "inpainting":                                                       # jobs: one image each
        assert sorted(map(repr, sum(plan.jobs, []))) == sorted(repr(k) for k in plan.keys if k[0] == "inpainting")
        assert all(len({PLAN_IMAGES[plan.recipe[k][1]] for k in job}) == 1 for job in plan.jobs)
        assert all(plan.jobs[j][i] == key for key, (j, i) in plan.job_of_key.items())


def test_plan_alone_follows_the_thesis_codes_switches():
    """noop_step repeats the step before the full one; truncation chains every row's steps (one job
    per image and order, nothing shared across orders); random_scalar draws per row and step."""
    noop = pf._plan(PLAN_IMAGES, PLAN_RANKS, PLAN_COUNTS, "inpainting", frozenset({"noop_step"}))
    assert all(row[3] == row[2] != ("gray",) for row in noop.row_keys)
    chained = pf._plan(PLAN_IMAGES, PLAN_RANKS, PLAN_COUNTS, "inpainting", frozenset({"truncation"}))
    assert chained.n_inpainted == 3 * 2                                            # 3 rows x 2 partial steps
    assert len(chained.jobs) == 3 and all(len(job) == 2 for job in chained.jobs)
    scalar = pf._plan(PLAN_IMAGES, PLAN_RANKS, PLAN_COUNTS, "random", frozenset({"random_scalar"}))
    assert len(scalar.keys) == 2 + 1 + 3 * 3 and scalar.n_inpainted == 0           # every row and step


def test_count_images_is_the_plans_count(scene):
    x, _, relevance = scene
    rows = torch.cat([relevance, relevance.flip(-1)])
    masks = distinct_masks(rows, ["morf", "morf"], 8, [c for c in pf.flip_schedule(64) if c < 64])
    assert pf.count_images(x.expand(2, -1, -1, -1), rows, mode="gray") == (len(masks) + 2, 0)


@pytest.mark.parametrize("order, error, message", [
    (["morf", "lrf"], ValueError, "order has 2 entries for a batch of 1"),
    (["mrf"], ValueError, "unknown order 'mrf'"),
    (3, TypeError, "order must be one of"),
])
def test_bad_order_sequences(scene, order, error, message):
    x, model, relevance = scene
    with pytest.raises(error, match=message):
        pf.pixel_flipping(model, x, relevance, 0, order=order, workers=0)


def test_inpainting_keeps_untouched_pixels_and_thesis_truncation_drifts_them():
    img = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    x = normalize_u8(torch.from_numpy(img))[None]
    torch.manual_seed(0)
    w = torch.randn(3, 32, 32)
    model = Linear(w).eval()
    fixed = pf.pixel_flipping(model, x, w * x, 0, patch_size=4, keep_steps=range(1, 9), keep_masks=True, workers=0)
    compat = pf.pixel_flipping(model, x, w * x, 0, patch_size=4, keep_steps=range(1, 9), keep_masks=True,
                               thesis_compat=["truncation", "noop_step"], workers=0)
    for k in range(1, 8):
        untouched = ~fixed.masks[0, k]
        assert torch.equal(fixed.images[k][0][:, untouched], x[0][:, untouched])
    drift = x[0][:, ~compat.masks[0, 6]] - compat.images[6][0][:, ~compat.masks[0, 6]]
    assert drift.min() >= -1e-6 and drift.max() > 0.5 / 255 / max(STD)   # only ever down, by whole levels
    # all patches flipped (step 8 of 8x8 patches): the thesis code's inpainting is a no-op, lrpkit's is gray
    gray = ((0.5 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert torch.equal(fixed.images[8], gray)
    assert fixed.scores[0, 8] == fixed.scores[0, 9]
    assert (compat.images[8] - compat.images[7]).abs().max() < 2.5 / 255 / min(STD)


def test_thesis_gray_is_the_batch_midpoint(scene):
    x, model, relevance = scene
    res = pf.pixel_flipping(model, x, relevance, 0, thesis_compat=["batch_gray"], keep_steps=[9], workers=0)
    midpoint = (x.min().item() + x.max().item()) / 2
    assert torch.equal(res.images[9], torch.full_like(x, midpoint))


def test_telea_properties_the_design_relies_on():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    patch_mask = rng.random((6, 6)) < 0.4
    mask = inpainting.patch_mask_to_pixels(patch_mask, 8, 48, 48)
    out = inpainting.inpaint_patch_masks(img, patch_mask[None], 8)[0]
    assert np.array_equal(out[~mask], img[~mask])                        # outside the mask: untouched
    other = img.copy()
    other[mask] = rng.integers(0, 256, other[mask].shape, dtype=np.uint8)
    assert np.array_equal(out, inpainting.inpaint_patch_masks(other, patch_mask[None], 8)[0])  # no leak
    full = np.ones((48, 48), dtype=bool)
    assert np.array_equal(inpainting.telea(img, full), img)              # full mask: OpenCV's no-op


def test_scores_softmax_and_predicted_target(scene):
    x, _, relevance = scene
    model = Linear(objects_scene()[1] * 1e-3).eval()   # small logits: softmax away from 0 and 1
    res = pf.pixel_flipping(model, x, relevance, None, score="softmax", mode="gray", workers=0)
    logits = model(x)[0]
    assert res.targets.tolist() == [int(logits.argmax())]
    assert res.scores[0, 0].item() == pytest.approx(torch.softmax(logits.double(), 0).max().item(), rel=1e-6)
    assert ((res.scores > 0) & (res.scores < 1)).all()


def test_auc_and_aopc():
    scores = torch.tensor([[4.0, 2.0, 1.0, 1.0]])
    assert pf.auc(scores).item() == pytest.approx(3 + 1.5 + 1)
    assert pf.auc(scores, "fraction", [0, 0.5, 1.0, 1.0]).item() == pytest.approx(0.5 * 3 + 0.5 * 1.5)
    assert pf.aopc(scores).item() == pytest.approx((0 + 2 + 3 + 3) / 4)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, error, message", [
    (dict(relevance=torch.zeros(1, 3, 64, 32)), ValueError, "relevance shape"),
    (dict(relevance=torch.full((1, 3, 64, 64), math.nan)), ValueError, "relevance contains NaN"),
    (dict(x=torch.full((1, 3, 64, 64), math.inf)), ValueError, "x contains NaN or Inf"),
    (dict(patch_size=0), ValueError, "patch_size"),
    (dict(patch_size=65), ValueError, "patch_size"),
    (dict(patch_size=2.5), TypeError, "patch_size"),
    (dict(order="mrf"), ValueError, "unknown order"),
    (dict(mode="blur"), ValueError, "unknown mode"),
    (dict(schedule="square"), ValueError, "unknown schedule"),
    (dict(score="prob"), ValueError, "unknown score"),
    (dict(target=2), ValueError, "target .* out of range"),
    (dict(target=-1), ValueError, "target .* out of range"),
    (dict(target=[0, 1]), ValueError, "target has 2 entries"),
    (dict(thesis_compat=["truncate"]), ValueError, "unknown thesis_compat"),
    (dict(model="vgg16"), TypeError, "model must be"),
    (dict(workers=-1), ValueError, "workers"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(keep_steps=[10]), ValueError, "keep_steps"),
    (dict(gray_value=1.5), ValueError, "gray_value"),
    (dict(target=0.5), TypeError, "target"),
])
def test_bad_input_gets_a_clear_error(scene, change, error, message):
    x, model, relevance = scene
    kwargs = dict(model=model, x=x, relevance=relevance, target=0, workers=0, mode="gray")
    kwargs.update(change)
    with pytest.raises(error, match=message):
        pf.pixel_flipping(**kwargs)


def test_training_mode_model_is_refused(scene):
    x, model, relevance = scene
    with pytest.raises(ValueError, match="training mode"):
        pf.pixel_flipping(model.train(), x, relevance, 0)
    model.eval()


def test_float64_input_and_model(scene):
    x, model, relevance = scene
    model64 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 2)).double().eval()
    with torch.no_grad():
        model64[1].weight.copy_(model.w)
        model64[1].bias.copy_(model.b)
    for mode in ("inpainting", "random"):
        res64 = pf.pixel_flipping(model64, x.double(), relevance.double(), 0, mode=mode, workers=0)
        res32 = pf.pixel_flipping(model, x, relevance, 0, mode=mode, workers=0)
        torch.testing.assert_close(res64.scores, res32.scores, rtol=1e-5, atol=1e-3)


def test_small_batches_give_the_same_scores(scene):
    """Chunking (batch_size) and the predicted-class lookup across chunks do not change the result."""
    x, model, relevance = scene
    xs = torch.cat([x, x.flip(-1)])
    rel = torch.cat([relevance, relevance.flip(-1)])
    big = pf.pixel_flipping(model, xs, rel, None, workers=0, batch_size=64)
    small = pf.pixel_flipping(model, xs, rel, None, workers=0, batch_size=1)
    assert torch.equal(big.targets, small.targets)
    torch.testing.assert_close(big.scores, small.scores, rtol=1e-6, atol=1e-4)


def test_cpu_batch_size_holds_the_pixels_of_eight_224_px_images(scene):
    """The CPU's default batch: 8 · 224² pixels per forward pass, between 8 and 32 images; a run on
    a CPU model resolves it from its images' size."""
    size = pf.options.cpu_batch_size
    assert [size(224, 224), size(160, 160), size(112, 112), size(64, 64), size(448, 448)] == [8, 15, 32, 32, 8]
    assert size(224, 112) == 16 and size(1, 1) == 32
    x, model, relevance = scene
    run = pf.pixel_flipping(model, x, relevance, 0, workers=0)
    assert run.settings.batch_size == size(*x.shape[-2:])
    assert pf.pixel_flipping(model, x, relevance, 0, workers=0, batch_size=5).settings.batch_size == 5


class ViewedLinear(Linear):
    """:class:`Linear` that flattens its input with ``view``, which a channels-last input refuses."""

    def __init__(self, w: torch.Tensor, bias: float = 0.25):
        super().__init__(w, bias)
        self.layouts = []

    def forward(self, x):
        self.layouts.append(x.is_contiguous())
        return (x.double().view(x.shape[0], -1) @ self.w.T + self.b).float()


def test_a_model_that_refuses_the_channels_last_layout_is_scored_in_the_standard_one():
    """On the CPU the perturbed images go in channels-last (faster convolutions); a model whose
    ``view`` refuses that layout gets every batch of the run in the standard layout instead, with
    the scores of the plain model."""
    x, w, relevance = objects_scene()
    viewed, plain = ViewedLinear(w).eval(), Linear(w).eval()
    a = pf.pixel_flipping(viewed, x, relevance, 0, patch_size=8, mode="random", seed=0, batch_size=4,
                          device="cpu")
    b = pf.pixel_flipping(plain, x, relevance, 0, patch_size=8, mode="random", seed=0, batch_size=4,
                          device="cpu")
    assert viewed.layouts[0] is False and all(viewed.layouts[1:]) and len(viewed.layouts) > 3
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)


def test_channels_last_scores_agree_with_the_standard_layout():
    """A convolutional network scored by pixel_flipping (channels-last on the CPU) gives the scores
    of its forward pass on the same perturbed images in the standard layout, up to float rounding."""
    from experiment_models import tiny_vgg

    torch.manual_seed(0)
    model = tiny_vgg().eval()
    x = torch.randn(2, 3, 32, 32)
    relevance = torch.randn(2, 3, 32, 32)
    steps = list(range(len(pf.flip_schedule(16)) + 2))          # the input, the schedule, the gray image
    res = pf.pixel_flipping(model, x, relevance, 1, patch_size=8, mode="gray", keep_steps=steps, device="cpu")
    assert res.scores.shape[1] == len(steps)
    with torch.inference_mode():
        images = torch.stack([res.images[s] for s in steps], dim=1)               # [B, steps, 3, H, W]
        expected = model(images.flatten(0, 1).contiguous())[:, 1].view(images.shape[:2]).double()
    torch.testing.assert_close(res.scores, expected, rtol=1e-5, atol=1e-6)
