"""The ground-truth image task (lrpkit.synthetic): masks checked against an independent rasterisation
(matplotlib's point-in-polygon in float64, from the shapes' documented corners), the pixels against
the backgrounds and colours they are made of, determinism, splits, and the configuration's errors."""
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.path import Path  # noqa: E402

from lrpkit import data, synthetic  # noqa: E402
from lrpkit.imagenet import MEAN, STD  # noqa: E402
from lrpkit.synthetic import (CROSS_ARM, CROSS_HALF_WIDTH, RING_INNER, SQUARE_HALF, STAR_INNER,  # noqa: E402
                              TaskConfig)

needs_photos = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                  reason=f"no image mirror ({data.MIRROR_ENV} unset)")


@pytest.fixture(scope="module")
def batch():
    """600 training images of the default task (64 px, six kinds, 1-3 distractors), seed 0."""
    return synthetic.generate(TaskConfig(), 600, seed=0)


# --------------------------------------------------------------------------------------------
# The oracle: each kind from its documented corners, rasterised by matplotlib in float64


def corners(kind):
    """The corners ``(u, v)`` of a polygonal kind of size 1, as the module docstring gives them."""
    if kind == "square":
        h = SQUARE_HALF
        return [(h, h), (-h, h), (-h, -h), (h, -h)]
    if kind == "triangle":
        return [(math.cos(2 * math.pi * k / 3), math.sin(2 * math.pi * k / 3)) for k in range(3)]
    if kind == "cross":
        w, a = CROSS_HALF_WIDTH, CROSS_ARM
        return [(a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w), (-w, -a), (w, -a),
                (w, -w), (a, -w)]
    if kind == "star":
        points = []
        for k in range(5):
            points.append((math.cos(2 * math.pi * k / 5), math.sin(2 * math.pi * k / 5)))
            angle = 2 * math.pi * k / 5 + math.pi / 5
            points.append((STAR_INNER * math.cos(angle), STAR_INNER * math.sin(angle)))
        return points
    raise KeyError(kind)


def oracle_mask(kind, center, r, angle, size):
    """The pixels whose centres lie in the shape, ``[size, size]`` bool, in float64."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5)
    distance = np.hypot(x - center[0], y - center[1])
    if kind == "disc":
        return distance <= r
    if kind == "ring":
        return (distance <= r) & (distance >= RING_INNER * r)
    uv = np.array(corners(kind))
    c, s = math.cos(angle), math.sin(angle)
    xy = np.stack([center[0] + r * (uv[:, 0] * c - uv[:, 1] * s), center[1] + r * (uv[:, 0] * s + uv[:, 1] * c)], -1)
    return Path(xy).contains_points(np.stack([x.ravel(), y.ravel()], -1)).reshape(size, size)


def shape_area(kind):
    """Area of a kind of size 1."""
    return {"disc": math.pi, "ring": math.pi * (1 - RING_INNER ** 2), "square": 2.0,
            "triangle": 3 * math.sqrt(3) / 4, "cross": 8 * CROSS_ARM * CROSS_HALF_WIDTH - 4 * CROSS_HALF_WIDTH ** 2,
            "star": 5 * STAR_INNER * math.sin(math.pi / 5)}[kind]


# --------------------------------------------------------------------------------------------
# Masks and pixels


@needs_photos
def test_masks_equal_an_independent_rasterisation_of_the_documented_shapes(batch):
    size = batch.config.size
    wrong = total = 0
    for i in range(len(batch)):
        kind = batch.config.classes[batch.labels[i]]
        expected = oracle_mask(kind, batch.centers[i].double().numpy(), batch.radii[i].item(),
                               batch.angles[i].item(), size)
        wrong += int((expected != batch.masks[i].numpy()).sum())
        total += int(expected.sum())
    assert total > 100_000
    assert wrong <= 2, f"{wrong} of {total} mask pixels differ from the float64 rasterisation"


@needs_photos
def test_masks_are_whole_objects_inside_the_image_with_the_area_of_their_kind(batch):
    size = batch.config.size
    y, x = (torch.arange(size, dtype=torch.float64) + 0.5,) * 2
    low, high = batch.config.radius_px
    assert ((batch.radii >= low) & (batch.radii <= high)).all()
    assert ((batch.centers >= batch.radii[:, None]) & (batch.centers <= size - batch.radii[:, None])).all()
    for i in range(len(batch)):
        cx, cy = batch.centers[i].double()
        distance = torch.hypot(x[None, :] - cx, y[:, None] - cy)
        assert batch.masks[i].any()
        assert (distance[batch.masks[i]] <= batch.radii[i].double() + 1e-4).all()    # within r of the centre
    areas = batch.masks.sum((1, 2)).double() / batch.radii.double() ** 2
    for k, kind in enumerate(batch.config.classes):
        mean = areas[batch.labels == k].mean().item()
        assert mean == pytest.approx(shape_area(kind), rel=0.02), kind


@needs_photos
def test_the_mask_holds_the_object_colour_and_everything_else_is_the_background():
    config = TaskConfig(distractors=(0, 0))
    batch = synthetic.generate(config, 200, seed=5, split="test")
    background = synthetic.backgrounds(config, 200, seed=5, split="test")
    masks = batch.masks[:, None].expand_as(batch.images)
    assert torch.equal(batch.images[~masks], background[~masks])
    rgb = batch.rgb()
    for i in range(len(batch)):
        assert (rgb[i][batch.masks[i]] == batch.colors[i]).all()
    changed = (batch.images != background).any(1)[batch.masks]
    assert changed.double().mean() > 0.99        # the object differs from the photo under it


@needs_photos
def test_distractors_are_drawn_under_the_object_and_outside_its_mask(batch):
    without = synthetic.generate(TaskConfig(distractors=(0, 0)), 600, seed=0)
    for name in ("labels", "masks", "centers", "radii", "angles", "colors"):
        assert torch.equal(getattr(batch, name), getattr(without, name)), name
    masks = batch.masks[:, None].expand_as(batch.images)
    assert torch.equal(batch.images[masks], without.images[masks])          # the deciding object is drawn last
    differs = (batch.images != without.images).any(1).flatten(1).any(1)
    assert differs.double().mean() > 0.95
    assert set(batch.distractors.tolist()) == {1, 2, 3}
    assert (without.distractors == 0).all()


@needs_photos
def test_pixels_are_bytes_and_normalized_is_imagenet_normalization(batch):
    images = batch.images
    assert images.dtype == torch.float32 and images.shape == (600, 3, 64, 64)
    assert batch.labels.dtype == torch.int64 and batch.masks.dtype == torch.bool and batch.masks.shape == (600, 64, 64)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal((images * 255).round() / 255, images)
    assert torch.equal(batch.normalized(), data.normalize(batch.rgb()))
    expected = (images.double() - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / \
        torch.tensor(STD, dtype=torch.float64)[:, None, None]
    assert torch.allclose(batch.normalized().double(), expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------
# Classes and colours


@needs_photos
def test_labels_cover_every_class(batch):
    counts = torch.bincount(batch.labels, minlength=6)
    assert len(counts) == 6 and counts.min() >= 60 and counts.max() <= 140       # 100 ± 4.4 σ
    assert batch.class_names[:3] == tuple(batch.config.classes[i] for i in batch.labels[:3])


@needs_photos
def test_colour_does_not_tell_the_class(batch):
    # the colour of image i does not depend on the classes at all ...
    two = synthetic.generate(TaskConfig(classes=("star", "disc")), 600, seed=0)
    assert torch.equal(two.colors, batch.colors) and not torch.equal(two.labels, batch.labels)
    # ... and the mean colour of the object's pixels is alike for every class: each class's mean is
    # within 4 standard errors of the mean of all (the error measured on the images themselves)
    rgb = batch.images.permute(0, 2, 3, 1).double()
    color = torch.stack([rgb[i][batch.masks[i]].mean(0) for i in range(len(batch))])      # [600, 3]
    for k in range(6):
        chosen = color[batch.labels == k]
        error = chosen.std(0) / math.sqrt(len(chosen))
        assert ((chosen.mean(0) - color.mean(0)).abs() < 4 * error).all(), (k, chosen.mean(0), color.mean(0))
        assert ((chosen.mean(0) - color.mean(0)).abs() < 0.1).all()


# --------------------------------------------------------------------------------------------
# Determinism and splits


@needs_photos
def test_the_same_seed_and_config_give_identical_tensors(batch):
    again = synthetic.generate(TaskConfig(), 600, seed=0)
    for name in ("images", "labels", "masks", "centers", "radii", "angles", "colors", "distractors"):
        assert torch.equal(getattr(batch, name), getattr(again, name)), name
    other = synthetic.generate(TaskConfig(), 600, seed=1)
    assert not torch.equal(batch.labels, other.labels)


@needs_photos
def test_a_stream_cut_in_chunks_equals_one_call():
    config = TaskConfig(size=96, distractors=(2, 4))
    whole = synthetic.generate(config, 40, seed=3, split="validation")
    first = synthetic.generate(config, 13, seed=3, split="validation")
    rest = synthetic.generate(config, 27, seed=3, split="validation", start=13)
    assert rest.start == 13
    for name in ("images", "labels", "masks", "centers", "colors"):
        assert torch.equal(getattr(whole, name), torch.cat([getattr(first, name), getattr(rest, name)])), name


@needs_photos
def test_another_size_draws_the_same_scenes(batch):
    large = synthetic.generate(TaskConfig(size=128), 100, seed=0)
    small = batch
    for name in ("labels", "colors", "distractors"):
        assert torch.equal(getattr(large, name), getattr(small, name)[:100]), name
    assert torch.allclose(large.centers / 128, small.centers[:100] / 64, rtol=0, atol=1e-6)
    assert torch.allclose(large.radii / 128, small.radii[:100] / 64, rtol=0, atol=1e-6)
    halved = large.masks.view(100, 64, 2, 64, 2).double().mean((2, 4)) >= 0.5
    overlap = (halved & small.masks[:100]).sum() / (halved | small.masks[:100]).sum()
    assert overlap > 0.9
    assert repr(large) == ("Batch(100 images 128x128, classes ('disc', 'square', 'triangle', 'cross', 'ring', "
                           "'star'), seed=0, split='train', start=0)")


@needs_photos
def test_splits_share_no_image():
    config = TaskConfig()
    seen = {}
    for split in synthetic.SPLITS:
        rgb = synthetic.generate(config, 300, seed=0, split=split).rgb().numpy()
        for image in rgb:
            seen.setdefault(image.tobytes(), set()).add(split)
    assert len(seen) == 900


# --------------------------------------------------------------------------------------------
# Errors and the figure


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=16), r"^size must be an int >= 32"),
    (dict(size=4096), r"^size must be at most 1024"),
    (dict(classes=("disc",)), r"^classes must name at least 2 kinds"),
    (dict(classes=("disc", "hexagon")), r"^unknown classes entry 'hexagon'; choose one of 'disc'"),
    (dict(classes=("disc", "line")), r"^unknown classes entry 'line'"),
    (dict(classes=("disc", "ring", "disc")), r"^classes names 'disc' more than once"),
    (dict(classes="disc"), r"^classes must be a sequence of names"),
    (dict(radius=0.2), r"^radius must be a pair"),
    (dict(radius=(0.3, 0.2)), r"^radius must be a pair 0 < smallest <= largest"),
    (dict(radius=(0.02, 0.2)), r"^radius \(0.02, 0.2\) is too small: the smallest object is 1.28 px"),
    (dict(radius=(0.2, 0.5)), r"^radius \(0.2, 0.5\) does not fit"),
    (dict(radius=(0.1, float("nan"))), r"^radius must hold two finite numbers"),
    (dict(distractors=(3, 1)), r"^distractors must be a pair 0 <= fewest <= most <= 8"),
    (dict(distractors=(0, 9)), r"^distractors must be a pair"),
    (dict(distractors=(-1, 2)), r"^distractors\[0\] \(fewest\) must be an int >= 0"),
    (dict(distractor_kinds=("disc",)), r"^unknown distractor_kinds entry 'disc'; choose one of 'line'"),
    (dict(distractor_kinds=()), r"^distractor_kinds is empty but distractors is \(1, 3\)"),
    (dict(backgrounds=("castel",)), r"^unknown backgrounds entry 'castel' \(did you mean 'castle'\?\)"),
    (dict(backgrounds=()), r"^backgrounds is empty"),
])
def test_bad_configs_give_one_line_errors_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        TaskConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_configs_accept_lists_and_keep_tuples():
    config = TaskConfig(classes=["ring", "star"], radius=[0.2, 0.25], distractors=[0, 0], distractor_kinds=[])
    assert config.classes == ("ring", "star") and config.radius == (0.2, 0.25) and config.distractors == (0, 0)
    assert config.radius_px == (12.8, 16.0)
    hash(config)


def test_bad_arguments_of_generate():
    with pytest.raises(TypeError, match="config must be a synthetic.TaskConfig"):
        synthetic.generate(None, 1, seed=0)
    for kwargs, match in [(dict(n=0), "^n must be an int >= 1"), (dict(seed=-1), "^seed must be an int >= 0"),
                          (dict(seed=2 ** 64), "^seed must be below 2\\*\\*64"),
                          (dict(split="val"), "^unknown split 'val'; choose one of 'train', 'validation', 'test'$"),
                          (dict(start=-1), "^start must be an int >= 0")]:
        with pytest.raises(ValueError, match=match):
            synthetic.generate(TaskConfig(), **{"n": 1, "seed": 0, **kwargs})


@needs_photos
def test_sample_figure_shows_k_images_with_their_class(batch):
    fig = synthetic.sample_figure(batch, 6, columns=4)
    try:
        shown = [ax for ax in fig.axes if ax.images]
        assert len(fig.axes) == 8 and len(shown) == 6
        assert [ax.get_title() for ax in shown] == list(batch.class_names[:6])
        assert np.array_equal(shown[0].images[0].get_array(), batch.rgb()[0].numpy())
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="k is 601 but the batch holds 600 images"):
        synthetic.sample_figure(batch, 601)
