"""Figures and tables of an experiment's results (thesis Figures 3.2, 4.1-4.6, B.2c, Table 4.1).

The summaries are checked on synthetic tables whose answers are known by construction (a unique
minimum at a chosen setting, AUCs that are a formula of i, j and the image), the replay against the
stored rows of a real (tiny) run, and the plots by what they draw (the starred point, the number of
dots, a single band for a constant grid).
"""
from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lrpkit.experiment import load_config, read_results, run  # noqa: E402
from lrpkit.experiment import plots, report  # noqa: E402
from lrpkit.experiment.grid import default_axis  # noqa: E402
from lrpkit.experiment.replay import replay, stored_curves  # noqa: E402
from test_experiment import config_dict, write_val  # noqa: E402

AXIS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def synthetic(first=AXIS, second=AXIS, images=3, best=(3, 4), family="tutorial", variant="table"):
    """A results table: MoRF AUC = 10 + (i - bi)² + (j - bj)² + image, LRF = -that, random constant."""
    names = {"tutorial": ("gamma", "epsilon"), "decreasing-gamma": ("gamma1", "gamma2")}[family]
    rows = []
    for image, (i, a), (j, b) in itertools.product(range(images), enumerate(first), enumerate(second)):
        bowl = 10.0 + (i - best[0]) ** 2 + (j - best[1]) ** 2 + image
        for order, auc in (("morf", bowl), ("lrf", -bowl), ("random", 7.5 + image)):
            rows.append({"image": image, "composite": family, "variant": variant, "setting": len(second) * i + j,
                         "i": i, "j": j, names[0]: a, names[1]: b, "order": order, "auc": auc,
                         "relevance_min": -(1 + i + j + image), "relevance_max": 2 + i * j + image})
    return pd.DataFrame(rows)


def test_log_position_puts_zero_one_decade_below_the_smallest_value():
    np.testing.assert_allclose(report.log_position([0, 1e-4, 1e-2, 1]), [-5, -4, -2, 0])
    np.testing.assert_allclose(report.log_position([0, 0.1, 1], zero_gap=0.5), [-1.5, -1, 0])
    with pytest.raises(ValueError, match="values must be >= 0"):
        report.log_position([0.1, -1])


def test_auc_grid_is_the_mean_over_images_at_each_setting():
    df = synthetic()
    first, second, z = report.auc_grid(df, "morf")
    assert first.tolist() == AXIS and second.tolist() == AXIS
    i, j = np.meshgrid(range(6), range(6), indexing="ij")
    np.testing.assert_allclose(z, 10 + (i - 3) ** 2 + (j - 4) ** 2 + 1.0)   # mean of image offsets 0, 1, 2
    with pytest.raises(ValueError, match="no rows of order 'aopc'"):
        report.auc_grid(df, "aopc")
    with pytest.raises(ValueError, match="1 of 36 settings"):
        report.auc_grid(df[~((df["setting"] == 5) & (df["order"] == "morf"))], "morf")


def test_nearest_setting_finds_the_thesis_setting_140():
    axis = default_axis()
    full = synthetic(axis, axis, images=1)
    hit = report.nearest_setting(full, 0.01, 0.13895)
    assert hit["setting"] == 140 and hit["exact"]
    coarse = report.nearest_setting(synthetic(), 0.01, 0.13895)   # 0.13895 is nearest to 0.1 in log
    assert (hit["gamma"], coarse["gamma"], coarse["epsilon"]) == (0.01, 0.01, 0.1)
    assert coarse["setting"] == 6 * 3 + 4 and not coarse["exact"]
    assert report.nearest_setting(synthetic(), 0.0, 5e-5)["setting"] == 1       # 0 is its own point


def test_relevance_extremes_has_one_row_per_heatmap():
    df = synthetic()
    rows = report.relevance_extremes(df)
    assert len(rows) == 36 * 3 and not rows.duplicated(["setting", "image"]).any()
    assert rows["relevance_max"].max() == 2 + 25 + 2 and rows["relevance_min"].min() == -(1 + 10 + 2)


def test_contour_stars_the_best_setting_and_states_the_direction():
    df = synthetic()
    info = plots.contour(df, "morf")
    ax = info["ax"]
    assert info["best"]["setting"] == 6 * 3 + 4 and info["best"]["auc"] == pytest.approx(11.0)
    assert "lower is better" in ax.get_title()
    star = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(star) == 1
    assert star[0].get_xdata()[0] == pytest.approx(-2) and star[0].get_ydata()[0] == pytest.approx(-1)
    dots = [line for line in ax.lines if line.get_marker() == "."][0]
    assert len(dots.get_xdata()) == 36                                      # every setting measured
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "0"
    assert ax.get_xlabel() == "γ (layers 1-16)" and ax.get_ylabel() == "ε (layers 17-30)"
    lrf = plots.contour(df, "lrf")
    assert lrf["best"]["setting"] == 22 and "higher is better" in lrf["ax"].get_title()
    rnd = plots.contour(df, "random")
    assert rnd["constant"] and rnd["best"] is None and rnd["min"] == rnd["max"] == pytest.approx(8.5)
    assert not [line for line in rnd["ax"].lines if line.get_marker() == "*"]
    plt.close("all")


def test_contour_outlines_a_region_in_log_positions():
    info = plots.contour(synthetic(family="decreasing-gamma"), "morf", region=((0.05, 0.3), (0.01, 0.2)))
    (patch,) = info["ax"].patches
    assert patch.get_x() == pytest.approx(np.log10(0.05)) and patch.get_y() == pytest.approx(-2)
    assert patch.get_width() == pytest.approx(np.log10(0.3 / 0.05))
    assert info["ax"].get_xlabel() == "γ (layers 11-17)"
    plt.close("all")


def test_auc_distributions_and_relevance_plot_return_what_they_draw():
    tables = {"LRP-Tutorial": synthetic(), "LRP-Decreasing-γ": synthetic(family="decreasing-gamma")}
    fig, data = plots.auc_distributions(tables)
    assert len(fig.axes) == 3 and len(data) == 2 * 3 * 36
    morf = data[(data["order"] == "morf") & (data["composite"] == "LRP-Tutorial")]
    assert morf["auc"].min() == pytest.approx(11.0)
    fig, rows = plots.relevance_extremes_plot(tables)
    assert len(fig.axes) == 2 and len(rows) == 2 * 36 * 3
    plt.close("all")


def test_score_curves_auc_is_the_trapezoid_of_the_mean_curve():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 30)).cumsum(axis=1)
    auc = plots.score_curves(scores)
    assert auc == pytest.approx(np.trapezoid(scores.mean(0), dx=1.0))
    with pytest.raises(ValueError, match="scores must be"):
        plots.score_curves(scores[0])
    plt.close("all")


def test_experiments_table_lists_every_composite_and_order(tmp_path):
    val = write_val(tmp_path / "val", n=1)
    tutorial = load_config(config_dict(val))
    decreasing = load_config(config_dict(val, composite={"family": "decreasing-gamma"},
                                         grid={"gamma1": [0.0, 1.0], "gamma2": [0.0, 0.5, 1.0]},
                                         pf={"orders": ["morf"]}))
    table = report.experiments_table([decreasing, tutorial])
    assert table[["LRP composite", "PF order"]].values.tolist() == [
        ["LRP-Decreasing-γ", "MoRF"], ["LRP-Tutorial", "MoRF"], ["LRP-Tutorial", "LRF"], ["LRP-Tutorial", "Random"]]
    assert table["Grid"][0] == "γ (layers 11-17): 2 values × γ (layers 18-24): 3 values"
    assert table["Images"][1] == "ILSVRC-2012 val, class axolotl, 32 px"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    val = write_val(tmp_path_factory.mktemp("val"), n=2)
    out = tmp_path_factory.mktemp("run") / "results"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(config_dict(val), out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    return out


def test_replay_recomputes_the_stored_curves_of_its_settings(tiny_run):
    """Settings 3 and 1 of image 1, in that order: the replayed curves are the stored ones."""
    df = read_results(tiny_run)
    again = replay(tiny_run, [3, 1], image=1, keep_steps=[-2])
    assert again.settings == [3, 1] and again.unit.index == 1 and again.relevance.shape[0] == 2
    stored = stored_curves(df, again)
    assert len(stored) == 2 * 3
    for setting, order in stored:
        row = again.row(setting, order)
        np.testing.assert_allclose(again.pixel_flipping.scores[row].numpy(), stored[(setting, order)],
                                   rtol=1e-9, atol=1e-12)
    rows = df[(df["image"] == 1) & (df["order"] == "morf")].set_index("setting")
    heat = again.relevance.double().sum(1).flatten(1)
    assert heat[0].max().item() == pytest.approx(rows.loc[3, "relevance_max"], rel=1e-9)
    assert heat[1].min().item() == pytest.approx(rows.loc[1, "relevance_min"], rel=1e-9)
    (kept,) = again.pixel_flipping.images.values()                   # the step before gray
    assert kept.shape[0] == 2 * 3


def test_replay_of_one_setting_asked_for_twice_gives_its_heatmap_twice(tiny_run):
    """Settings given more than once (the best MoRF and LRF setting can be the same)."""
    twice = replay(tiny_run, [2, 2], orders=[])
    once = replay(tiny_run, [2, 0], orders=[])
    assert twice.relevance.shape[0] == 2
    assert torch.equal(twice.relevance[0], twice.relevance[1])
    torch.testing.assert_close(twice.relevance[0], once.relevance[0], rtol=1e-9, atol=1e-12)


def test_replay_refuses_settings_images_and_orders_it_does_not_have(tiny_run):
    with pytest.raises(ValueError, match=r"settings \[4\] are not settings of this 2 x 2 grid"):
        replay(tiny_run, [4], orders=[])
    with pytest.raises(ValueError, match="image 5 is not an image"):
        replay(tiny_run, [0], image=5, orders=[])
    with pytest.raises(ValueError, match=r"order\(s\) \['gray'\] were not run"):
        replay(tiny_run, [0], orders=["gray"])
