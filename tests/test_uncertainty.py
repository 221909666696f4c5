"""How far to trust the star: the bootstrap of the best setting and the graders' rank agreement.

Checked on synthetic results tables whose answer is known by construction: one setting far better
than the rest (the region is that setting alone), settings equal in expectation (the region holds
most of them), a setting worse on every image by the same amount under large image-to-image noise
(a paired comparison excludes it), and graders that are exact monotone transforms of each other
(τ = ±1, and τ equals SciPy's of the oriented means).
"""
from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lrpkit.experiment import agreement, plots, report, uncertainty  # noqa: E402
from lrpkit.experiment.uncertainty import GRADERS, TRUTH, grader_agreement, optimum_uncertainty  # noqa: E402

FIRST = [0.0, 0.01, 0.1, 1.0]
SECOND = [0.0, 1e-3, 1e-1]


def bowl(best=(2, 1), first=FIRST, second=SECOND, depth=1.0):
    """``[n1, n2]`` mean MoRF AUC: 10 + depth · squared grid distance from ``best``."""
    i, j = np.meshgrid(range(len(first)), range(len(second)), indexing="ij")
    return 10.0 + depth * ((i - best[0]) ** 2 + (j - best[1]) ** 2)


def table(morf, lrf=None, *, images=30, noise=0.1, image_noise=0.0, seed=0, road=None, truth=None,
          first=FIRST, second=SECOND):
    """A results table: per image and setting, MoRF AUC = ``morf`` + an image effect shared by every
    setting (``image_noise``) + independent noise; LRF AUC = ``lrf`` (default 20 - ``morf``) with its own
    noise; random constant per image; ``srg`` = LRF - MoRF per heatmap (in all three orders' rows).
    ``road(morf, lrf) -> (road_morf, road_lrf)`` adds ``road_auc`` and ``road_srg``, ``truth(morf)``
    adds ``loc_mass``."""
    rng = np.random.default_rng(seed)
    morf = np.asarray(morf, dtype=np.float64)
    n1, n2 = morf.shape
    lrf = 20.0 - morf if lrf is None else np.asarray(lrf, dtype=np.float64)
    shared = image_noise * rng.normal(size=(images, 1, 1))
    m = morf + shared + noise * rng.normal(size=(images, n1, n2))
    l = lrf - shared + noise * rng.normal(size=(images, n1, n2))
    image, i, j = (a.ravel() for a in np.meshgrid(range(images), range(n1), range(n2), indexing="ij"))
    heat = pd.DataFrame({"image": image, "composite": "tutorial", "variant": "table", "setting": n2 * i + j,
                         "i": i, "j": j, "gamma": np.asarray(first)[i], "epsilon": np.asarray(second)[j]})
    per_order = {"morf": m.ravel(), "lrf": l.ravel(), "random": 5.0 + image.astype(np.float64)}
    if road is not None:
        road_m, road_l = road(m, l)
        road_order = {"morf": road_m.ravel(), "lrf": road_l.ravel(), "random": np.full(len(image), 1.0)}
    frames = []
    for order, auc in per_order.items():
        part = heat.assign(order=order, auc=auc, srg=(l - m).ravel())
        if road is not None:
            part = part.assign(road_auc=road_order[order], road_srg=(road_l - road_m).ravel())
        if truth is not None:
            part = part.assign(loc_mass=truth(m).ravel())
        frames.append(part)
    rows = pd.concat(frames).sort_values(["image", "setting"], kind="stable", ignore_index=True)
    return rows


def oriented_means(results, g):
    """The settings' mean of a grader over the images, higher is better, ascending setting (by pandas)."""
    rows = results if g.order is None else results[results["order"] == g.order]
    if g.order is None:
        rows = rows[rows["order"] == rows["order"].iloc[0]]
    means = rows.groupby("setting")[g.column].mean().sort_index().to_numpy()
    return -means if g.best == "min" else means


def valid(sure):
    """The properties every answer has."""
    assert sure.region.shape == sure.share.shape == sure.z.shape == (len(sure.first), len(sure.second))
    assert sure.share.sum() == pytest.approx(1.0) and (sure.share >= 0).all()
    assert sure.n_region == int(sure.region.sum()) >= 1
    if not sure.constant:
        i, j = list(sure.first).index(sure.best_first), list(sure.second).index(sure.best_second)
        assert sure.region[i, j] and sure.share[i, j] == pytest.approx(sure.best_share)
        assert sure.best_mean == pytest.approx(sure.z[i, j])
        assert (np.nanmin(sure.z) if sure.grader.best == "min" else np.nanmax(sure.z)) == sure.best_mean


# --------------------------------------------------------------------------------------------------
# the graders


def test_the_graders_are_found_by_name_and_by_column():
    assert [g.name for g in GRADERS] == ["pf-morf", "pf-lrf", "pf-srg", "road-morf", "road-lrf", "road-srg"]
    assert [(g.column, g.order, g.best) for g in GRADERS] == [
        ("auc", "morf", "min"), ("auc", "lrf", "max"), ("srg", None, "max"), ("road_auc", "morf", "min"),
        ("road_auc", "lrf", "max"), ("road_srg", None, "max")]
    assert {g.column for g in TRUTH} == {"loc_mass", "loc_rank", "loc_pointing"} and {g.best for g in TRUTH} == {"max"}
    assert uncertainty.grader("road-lrf").label == "ROAD LeRF AUC"
    assert uncertainty.grader(GRADERS[0]) is GRADERS[0]
    with pytest.raises(ValueError, match="unknown grader 'pf-aopc'.*pf-morf.*road-srg") as error:
        uncertainty.grader("pf-aopc")
    assert "\n" not in str(error.value)
    plain = table(bowl())
    assert [g.name for g in uncertainty.graders_in(plain)] == ["pf-morf", "pf-lrf", "pf-srg"]
    full = table(bowl(), road=lambda m, l: (m, l), truth=lambda m: -m)
    assert [g.name for g in uncertainty.graders_in(full)] == [g.name for g in GRADERS]
    assert [g.name for g in uncertainty.graders_in(full, TRUTH)] == ["loc-mass"]
    only_morf = plain[plain["order"] != "lrf"].drop(columns="srg")
    assert [g.name for g in uncertainty.graders_in(only_morf)] == ["pf-morf"]


# --------------------------------------------------------------------------------------------------
# the best setting and its region


def test_a_setting_far_better_than_the_rest_is_the_whole_region_and_always_the_best():
    results = table(bowl(best=(2, 1)), noise=1e-3)
    best = report.best_settings(results).set_index("order")
    for name in ("pf-morf", "pf-lrf", "pf-srg"):
        sure = optimum_uncertainty(results, name, n_boot=300)
        valid(sure)
        expected = np.zeros((4, 3), dtype=bool)
        expected[2, 1] = True
        assert (sure.region == expected).all() and sure.n_region == 1, name
        assert sure.best_share == pytest.approx(1.0) and sure.share[2, 1] == pytest.approx(1.0)
        assert (sure.best_first, sure.best_second, sure.best_setting) == (0.1, 1e-3, 3 * 2 + 1)
        assert (sure.n_settings, sure.n_images, sure.n_boot, sure.level) == (12, 30, 300, 0.95)
        if sure.grader.order is not None:        # the star of report.best_settings (and of plots.contour)
            row = best.loc[sure.grader.order]
            assert (row["gamma"], row["epsilon"], int(row["setting"])) == (sure.best_first, sure.best_second,
                                                                            sure.best_setting)
            np.testing.assert_allclose(sure.z, report.auc_grid(results, sure.grader.order)[2])
            assert sure.best_mean == pytest.approx(row["auc"])
    text = optimum_uncertainty(results, "pf-morf", n_boot=300).text()
    assert text == ("pf-morf: best gamma = 0.1, epsilon = 0.001 (in 100 % of 300 resamples); "
                    "1 of 12 settings not significantly worse at 95 %")


@pytest.mark.parametrize("seed", range(3))
def test_settings_equal_in_expectation_leave_most_in_the_region_and_share_the_wins(seed):
    results = table(np.full((4, 3), 10.0), noise=5.0, seed=seed)
    for name in ("pf-morf", "pf-lrf", "pf-srg"):      # independent noise: any answer, but a valid one
        valid(optimum_uncertainty(results, name, n_boot=200, seed=seed))
    # the same 30 values at every setting, shuffled among the images (+ < 1e-6): equal means, large noise
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 5.0, size=30)
    for order in ("morf", "lrf"):
        rows = results["order"] == order
        shuffled = np.stack([rng.permutation(values) + 1e-8 * s for s in range(12)], axis=1)   # [image, setting]
        results.loc[rows, "auc"] = shuffled[results.loc[rows, "image"], results.loc[rows, "setting"]]
    for name in ("pf-morf", "pf-lrf"):
        sure = optimum_uncertainty(results, name, n_boot=400)
        valid(sure)
        assert sure.n_region >= 9, (name, sure.n_region)       # of 12: each is left out by chance at most 5 % of the time
        assert sure.share.max() < 0.5 and (sure.share > 0.02).sum() >= 6    # the wins are spread


def test_a_paired_comparison_excludes_a_setting_worse_on_every_image_despite_large_image_noise():
    means = np.full((4, 3), 10.0)
    means[0, 0] = 9.0                  # the best MoRF AUC, by 1 on every image
    results = table(means, lrf=np.full((4, 3), 20.0), noise=1e-6, image_noise=50.0)
    sure = optimum_uncertainty(results, "pf-morf", n_boot=300)
    assert (sure.best_first, sure.best_second) == (0.0, 0.0)
    assert sure.n_region == 1 and sure.region[0, 0]
    # the image effect (sd 50) swamps the difference of the settings' means, but it is paired: it cancels
    spread = results[results["order"] == "morf"].groupby("image")["auc"].mean().std()
    assert spread > 10 * 1.0


def test_the_region_grows_with_the_level_and_always_holds_the_best():
    results = table(bowl(depth=0.05), noise=1.0, images=20, seed=3)
    for name in ("pf-morf", "pf-lrf", "pf-srg"):
        regions = []
        for level in (0.5, 0.8, 0.95, 0.999):
            sure = optimum_uncertainty(results, name, n_boot=500, level=level, seed=7)
            valid(sure)
            regions.append(sure.region)
        for smaller, larger in zip(regions, regions[1:]):     # the same resamples: a lower bound that only falls
            assert (larger | ~smaller).all()
        assert regions[-1].sum() > regions[0].sum()


def test_the_same_seed_gives_the_same_answer_and_another_seed_a_valid_one():
    results = table(bowl(depth=0.1), noise=1.0, images=15, seed=1)
    one = optimum_uncertainty(results, "pf-lrf", n_boot=250, seed=11)
    two = optimum_uncertainty(results, "pf-lrf", n_boot=250, seed=11)
    for field in ("z", "region", "share"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
    assert one.text() == two.text()
    other = optimum_uncertainty(results, "pf-lrf", n_boot=250, seed=12)
    valid(other)
    assert other.seed == 12 and not np.array_equal(other.share, one.share)
    assert (other.best_first, other.best_second, other.best_mean) == (one.best_first, one.best_second, one.best_mean)


def test_a_grader_the_same_at_every_setting_has_no_best():
    results = table(bowl(), noise=0.1).assign(srg=2.5)
    sure = optimum_uncertainty(results, "pf-srg", n_boot=100)
    valid(sure)
    assert sure.constant and np.isnan(sure.best_first) and sure.best_setting == -1
    assert sure.region.all() and sure.share == pytest.approx(np.full((4, 3), 1 / 12))
    assert "the same at every setting" in sure.text()


@pytest.mark.parametrize("kwargs, match", [
    ({"level": 1.5}, r"level must lie in \(0, 1\), got 1.5"),
    ({"level": 0.0}, r"level must lie in \(0, 1\), got 0.0"),
    ({"n_boot": 0}, "n_boot must be a positive integer, got 0"),
    ({"n_boot": 2.5}, "n_boot must be a positive integer, got 2.5"),
    ({"n_boot": True}, "n_boot must be a positive integer, got True"),
])
def test_bad_arguments_are_named_in_one_line(kwargs, match):
    results = table(bowl(), images=5)
    with pytest.raises(ValueError, match=match) as error:
        optimum_uncertainty(results, "pf-morf", **kwargs)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=match):
        grader_agreement(results, **kwargs)


def test_a_grader_whose_column_is_missing_is_named_with_the_columns_there_are():
    results = table(bowl(), images=5)
    for call in (lambda: optimum_uncertainty(results, "road-morf"),
                 lambda: grader_agreement(results, ["pf-morf", "road-srg"])):
        with pytest.raises(ValueError, match=r"'road_(auc|srg)'.*they have image, composite.*auc, srg") as error:
            call()
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown grader 'morf'"):
        optimum_uncertainty(results, "morf")


# --------------------------------------------------------------------------------------------------
# the graders' agreement


def test_graders_that_are_monotone_transforms_of_each_other_have_tau_one_or_minus_one():
    # ROAD's AUC = 3 · Pixel-Flipping's + 2: the same ranking in each order (τ = +1 once oriented)
    same = table(bowl(), noise=0.5, images=12, road=lambda m, l: (3 * m + 2, 3 * l + 2))
    rows = grader_agreement(same, ["pf-morf", "road-morf", "pf-lrf", "road-lrf"], n_boot=200).set_index(
        ["first", "second"])
    for pair in (("pf-morf", "road-morf"), ("pf-lrf", "road-lrf")):
        row = rows.loc[pair]
        assert (row["tau"], row["tau_low"], row["tau_high"]) == (1.0, 1.0, 1.0)
        assert row["agrees"] == "yes" and row["same_optimum"]
    # ROAD's AUC = -Pixel-Flipping's, graded in the same direction: the opposite ranking
    opposite = table(bowl(), noise=0.5, images=12, road=lambda m, l: (-m, -l))
    row = grader_agreement(opposite, ["pf-morf", "road-morf"], n_boot=200).iloc[0]
    assert (row["tau"], row["tau_low"], row["tau_high"]) == (-1.0, -1.0, -1.0)
    assert row["agrees"] == "no" and not row["same_optimum"]
    assert (row["images"], row["settings"]) == (12, 12)


def test_tau_is_scipys_of_the_oriented_means_and_the_interval_rank_agreements():
    results = table(bowl(depth=0.2), noise=1.0, images=25, seed=5,
                    road=lambda m, l: (m + np.random.default_rng(9).normal(0, 1.0, m.shape), l ** 1.5),
                    truth=lambda m: np.exp(-m / 10))
    graders = uncertainty.graders_in(results) + uncertainty.graders_in(results, TRUTH)
    rows = grader_agreement(results, graders, n_boot=300, level=0.9, seed=4)
    assert len(rows) == len(graders) * (len(graders) - 1) // 2 == 21
    assert list(rows.columns) == list(uncertainty.AGREEMENT_COLUMNS)
    by_name = {g.name: g for g in graders}
    for _, row in rows.iterrows():
        one, two = by_name[row["first"]], by_name[row["second"]]
        expected = stats.kendalltau(oriented_means(results, one), oriented_means(results, two)).statistic
        assert row["tau"] == pytest.approx(expected, abs=1e-12), (one.name, two.name)
        sign = {g.name: -1.0 if g.best == "min" else 1.0 for g in graders}
        interval = agreement.rank_agreement(sign[one.name] * agreement.per_image(results, one.column, one.order)[1],
                                            sign[two.name] * agreement.per_image(results, two.column, two.order)[1],
                                            n_boot=300, level=0.9, seed=4)
        assert (row["tau_low"], row["tau_high"]) == (interval.low, interval.high)
        assert row["agrees"] == ("yes" if row["tau_low"] > 0 else "no" if row["tau_high"] < 0 else "undecided")
        a = optimum_uncertainty(results, one, n_boot=10)
        b = optimum_uncertainty(results, two, n_boot=10)
        assert row["same_optimum"] == ((a.best_first, a.best_second) == (b.best_first, b.best_second))


def test_agreement_of_fewer_than_two_graders_is_an_empty_table():
    results = table(bowl(), images=5)
    assert grader_agreement(results, ["pf-morf"]).empty
    assert list(grader_agreement(results, []).columns) == list(uncertainty.AGREEMENT_COLUMNS)


# --------------------------------------------------------------------------------------------------
# the figures and the report


def test_grader_contours_star_the_best_and_outline_the_region():
    results = table(bowl(depth=0.1), noise=1.0, images=10, road=lambda m, l: (m + 0.5, l - 0.5))
    drawn = plots.grader_contours(results, n_boot=150)
    assert list(drawn) == [g.name for g in GRADERS]
    assert len({id(marked["ax"].figure) for marked, _ in drawn.values()}) == 1
    for name, (marked, sure) in drawn.items():
        ax = marked["ax"]
        (star,) = [line for line in ax.lines if line.get_marker() == "*"]
        assert star.get_xdata()[0] == pytest.approx(report.log_position(np.r_[FIRST, sure.best_first])[-1])
        assert star.get_ydata()[0] == pytest.approx(report.log_position(np.r_[SECOND, sure.best_second])[-1])
        assert (marked["best"]["gamma"], marked["best"]["epsilon"]) == (sure.best_first, sure.best_second)
        assert marked["better_region"] == sure.n_region
        assert sure.grader.label in ax.get_title()
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert "not significantly worse than the best (95 %)" in labels
    plt.close("all")


def test_contour_draws_every_graders_column_and_checks_the_region_shape():
    results = table(bowl(), noise=0.1, images=4, road=lambda m, l: (m, l))
    marked = plots.contour(results, "lrf", column="road_auc")
    assert "ROAD LeRF AUC: higher is better" in marked["ax"].get_title()
    assert (marked["best"]["gamma"], marked["best"]["epsilon"]) == (0.1, 1e-3)
    srg = plots.contour(results, column="srg")
    assert srg["ax"].get_title().startswith("Pixel-Flipping SRG") and "better_region" not in srg
    with pytest.raises(ValueError, match="column 'road_auc' differs between orders: give the order"):
        plots.contour(results, column="road_auc")
    with pytest.raises(ValueError, match=r"better_region has shape \[3, 4\], but the grid of 'auc' is \[4, 3\]"):
        plots.contour(results, "morf", better_region=np.ones((3, 4), dtype=bool))
    plt.close("all")


def test_the_report_has_a_line_per_grader_and_per_pair():
    results = table(bowl(depth=0.2), noise=1.0, images=10, road=lambda m, l: (m + 1, l - 1))
    lines = report.report_lines(results)
    assert lines[0] == "10 images, 12 settings, orders morf, lrf, random"
    for g in GRADERS:
        mine = [line for line in lines if line.startswith(f"{g.name}: ")]
        assert len(mine) == 1 and mine[0] == optimum_uncertainty(results, g).text()
    pairs = [line for line in lines if line.startswith("τ(")]
    assert len(pairs) == 15 and all(line.endswith((": agree", ": disagree", ": undecided")) for line in pairs)
    plain = report.report_lines(table(bowl(), images=3).drop(columns="srg"))
    assert len([line for line in plain if line.startswith("τ(")]) == 1      # pf-morf with pf-lrf


def test_the_report_of_a_partial_table_says_why_it_has_no_bootstrap():
    results = table(bowl(), images=4)
    partial = results[~((results["image"] == 3) & (results["setting"] == 5))]
    lines = report.report_lines(partial)
    assert lines[-1].startswith("no bootstrap of the best settings:") and "not every image" in lines[-1]


def test_the_report_of_36_settings_and_100_images_has_a_line_per_grader_and_pair():
    first = [0.0, 0.001, 0.01, 0.1, 0.25, 1.0]
    second = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    results = table(bowl(best=(3, 2), first=first, second=second), noise=2.0, images=100, first=first,
                    second=second, road=lambda m, l: (m + 1, l + 1))
    lines = report._uncertainty_lines(results)
    assert len(lines) == 6 + 15
