"""lrpkit.explorer: each frame shows its own setting's heatmap, verdict, numbers and curve; bad grids are refused.

The page itself (sliders moved in Chromium, on the built book) is tested in test_book_site.py.
"""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from lrpkit import explorer, plotting
from lrpkit.book import wording


def _smooth(rng, *shape):
    """Random heatmaps constant on 16 x 16 blocks: JPEG (8 x 8 blocks, 4:2:0 chroma) keeps them nearly exact."""
    return np.kron(rng.normal(size=(*shape[:-2], shape[-2] // 16, shape[-1] // 16)), np.ones((16, 16)))


def _grid(rng, n1=3, n2=4, size=32, **extra):
    return explorer.Grid("two axes", [("γ", np.logspace(-3, 0, n1)), ("ε", [0.0, *np.logspace(-2, 0, n2 - 1)])],
                         _smooth(rng, n1, n2, 3, size, size), unstable=rng.random((n1, n2)) > 0.5,
                         numbers={"AUC": rng.random((n1, n2))}, curves=rng.random((n1, n2, 7)), **extra)


def _decode(src: str) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert src.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))).convert("RGB"), dtype=np.float64)


def test_every_frame_shows_its_own_setting():
    rng = np.random.default_rng(0)
    grid = _grid(rng)
    view = explorer.explorer([grid], curve_x=np.arange(7), quality=95)
    relevance = np.asarray(grid.relevance)
    for i in range(3):
        for j in range(4):
            frame = view.frame(0, i, j)
            shown = _decode(frame["src"])
            # the thesis code's colouring of this setting's heatmap, up to JPEG's loss
            wanted = plotting.heatmap_rgb(relevance[i, j]).astype(np.float64)
            other = plotting.heatmap_rgb(relevance[(i + 1) % 3, j]).astype(np.float64)
            assert np.abs(shown - wanted).mean() < 3
            assert np.abs(shown - other).mean() > 4 * np.abs(shown - wanted).mean()
            assert frame["numbers"] == {"AUC": pytest.approx(float(grid.numbers["AUC"][i, j]))}
            assert frame["unstable"] == bool(grid.unstable[i, j])
            assert frame["curve"] == pytest.approx(grid.curves[i, j].tolist())
            assert f"γ = {grid.axes[0][1][i]:.3g}" in frame["title"]
            assert f"ε = {grid.axes[1][1][j]:.3g}" in frame["title"]
            assert ("unstable" if grid.unstable[i, j] else "stable") in frame["title"]


def test_the_image_is_drawn_over_the_heatmap_at_alpha():
    rng = np.random.default_rng(1)
    grid = explorer.Grid("one axis", [("γ", [0.0, 0.25])], _smooth(rng, 2, 16, 16))
    image = np.full((16, 16, 3), 200, dtype=np.uint8)
    frame = explorer.explorer([grid], image=image, alpha=0.5, quality=100).frame(0, 1)
    wanted = 0.5 * plotting.heatmap_rgb(grid.relevance[1]) + 0.5 * image
    assert np.abs(_decode(frame["src"]) - wanted).mean() < 3


def test_the_page_holds_the_frames_and_no_script_from_elsewhere():
    rng = np.random.default_rng(2)
    view = explorer.explorer([_grid(rng), _grid(rng, n1=2, n2=2)], curve_x=np.arange(7))
    fragment = view.html()
    assert explorer.CSS_CLASS in fragment
    assert not re.search(r"<script[^>]+src=", fragment)          # the site ships plotly.js
    frames = json.loads(re.search(r'id="[^"]+-frames">(.*?)</script>', fragment, re.S)[1])
    assert [len(g["frames"]) for g in frames["grids"]] == [3, 2]
    assert [len(g["sliders"]) for g in frames["grids"]] == [2, 2]
    assert [len(s["steps"]) for s in frames["grids"][1]["sliders"]] == [2, 2]
    page = view.page()
    assert "Plotly" in page and not re.search(r"<script[^>]+src=\"http", page)   # offline: embedded
    assert len(page) > len(fragment) + 1_000_000
    assert "2 grid(s), 16 settings" in repr(view)


@pytest.mark.parametrize("change, message", [
    (dict(relevance=np.zeros((3, 5, 8, 8))), "relevance must be"),
    (dict(unstable=np.zeros((4, 4), dtype=bool)), "unstable must start"),
    (dict(numbers={"AUC": np.zeros(3)}), "AUC must start"),
    (dict(axes=[("γ", [])]), "one or two axes"),
])
def test_a_grid_that_does_not_fit_its_axes_is_refused(change, message):
    rng = np.random.default_rng(3)
    base = _grid(rng)
    grid = explorer.Grid(**{**vars(base), "curves": None, **change})
    with pytest.raises(ValueError, match=message):
        explorer.explorer([grid])


def test_curves_need_their_x_values():
    with pytest.raises(ValueError, match="curve_x"):
        explorer.explorer([_grid(np.random.default_rng(4))])
    with pytest.raises(ValueError, match="at least one grid"):
        explorer.explorer([])


def test_the_same_grids_give_the_same_page():
    first = explorer.explorer([_grid(np.random.default_rng(5))], curve_x=np.arange(7)).html()
    again = explorer.explorer([_grid(np.random.default_rng(5))], curve_x=np.arange(7)).html()
    other = explorer.explorer([_grid(np.random.default_rng(6))], curve_x=np.arange(7)).html()
    assert first == again != other


def test_heatmaps_over_the_byte_budget_are_shrunk_alike_until_they_fit():
    """Noise compresses badly: 24 frames of 128 px take ~0.2 MB at full size; a budget of a third of
    that shrinks every frame by one factor, and the shrunk frames are the full ones resized."""
    rng = np.random.default_rng(7)
    grid = explorer.Grid("noise", [("γ", np.arange(4.0)), ("ε", np.arange(6.0))], rng.normal(size=(4, 6, 128, 128)))
    full = explorer.explorer([grid], max_bytes=None)
    assert full.side == (128, 128) and not full.shrunk
    budget = full.image_bytes // 3
    small = explorer.explorer([grid], max_bytes=budget)
    assert small.shrunk and small.image_bytes <= budget and small.side[0] < 128
    sides = {_decode(small.frame(0, i, j)["src"]).shape[:2] for i in range(4) for j in range(6)}
    assert sides == {small.side}
    assert small.side[0] == small.side[1] >= 0.5 * 128 / np.sqrt(3)        # not shrunk far beyond the need
    # the same frame: the full one shrunk (Lanczos), up to JPEG's error on noise
    reference = np.asarray(Image.fromarray(_decode(full.frame(0, 1, 2)["src"]).astype(np.uint8))
                           .resize(small.side[::-1], Image.Resampling.LANCZOS), dtype=np.float64)
    same = np.abs(_decode(small.frame(0, 1, 2)["src"]) - reference).mean()
    other = np.abs(_decode(small.frame(0, 1, 3)["src"]) - reference).mean()
    assert same < 0.5 * other
    # a grid within the budget is embedded as it is; the book's sentence says which happened
    assert explorer.explorer([grid], max_bytes=full.image_bytes).side == (128, 128)
    assert "shrunk" in wording.explorer_embedding(small, budget)
    assert "shrunk" not in wording.explorer_embedding(full, full.image_bytes) and "128 × 128 px" in \
        wording.explorer_embedding(full, full.image_bytes)


@pytest.mark.parametrize("max_bytes, message", [(100, "do not fit max_bytes=100 even at 16 px"),
                                                (0, "max_bytes must be a positive integer"),
                                                (2.5, "max_bytes must be a positive integer")])
def test_a_budget_that_cannot_hold_the_heatmaps_is_refused(max_bytes, message):
    with pytest.raises(ValueError, match=message):
        explorer.explorer([_grid(np.random.default_rng(8))], curve_x=np.arange(7), max_bytes=max_bytes)
