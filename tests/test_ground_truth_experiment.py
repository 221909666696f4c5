"""The experiment on the ground-truth task (``images.synthetic`` with ``model.trained``): its config's
checks, its units, the localisation columns (against Quantus 0.6 on heatmaps of a trained network),
and the agreement of two scores over the grid (lrpkit.experiment.agreement against scipy).

The network is a tiny training of lrpkit.training (32 px, 1/16 of VGG-16's widths: seconds), trained
once for the module.
"""
import os

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from lrpkit import composites, data, localisation, lrp, synthetic, training
from lrpkit.experiment import agreement, load_config, runner, store
from lrpkit.experiment import plan as planning
from lrpkit.experiment.config import ConfigError
from lrpkit.synthetic import TaskConfig
from lrpkit.training import TrainingConfig

pytestmark = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                reason=f"no image mirror ({data.MIRROR_ENV} unset): the task's backgrounds")

TINY = TrainingConfig(task=TaskConfig(size=32), images=768, eval_images=64, width=4, hidden=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("trained")
        training.train(TINY, folder, progress=False, echo=lambda line: None)
        return folder
    finally:
        torch.set_num_threads(threads)


def config_of(trained, **changes):
    raw = {"composite": {"family": "tutorial"}, "grid": {"gamma": [0.0, 0.25], "epsilon": [0.0, 0.25]},
           "images": {"synthetic": "test", "count": 3}, "model": {"trained": str(trained)},
           "pf": {"patch_size": 8, "mode": "gray"}, "diagnostics": False}
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            raw[section] = {**raw.get(section, {}), sub: value}
        else:
            raw[key] = value
    return load_config(raw)


# ---- the config


def test_the_images_take_the_size_and_seed_of_the_task_the_network_learned(trained):
    config = config_of(trained)
    assert config.data["images"]["size"] == 32 and config.data["images"]["resize"] == "none"
    assert config.data["model"]["arch"] == training.ARCH and config.data["model"]["weights"] is None
    units = planning.units(config)
    batch = synthetic.generate(TINY.task, 3, seed=TINY.seed, split="test")
    assert [u.label for u in units] == batch.labels.tolist()
    assert [u.file for u in units] == ["synthetic:test/00000", "synthetic:test/00001", "synthetic:test/00002"]
    assert len({u.sha256 for u in units}) == 3
    # one image generated alone is the same image (what the runner checks against the plan)
    alone = planning.synthetic_images(config, 2, 1)
    assert planning.synthetic_sha256(alone, 0) == units[2].sha256


@pytest.mark.parametrize("changes, words", [
    ({"model": {}}, "needs 'model.trained'"),
    ({"model": {"trained": "/nonexistent/folder"}}, "no trained network in /nonexistent/folder"),
    ({"images.count": None}, "'images.count' is required"),
    ({"images.size": 64}, "trained on 32x32 images"),
    ({"images.synthetic": "tets"}, "images.synthetic split"),
    ({"images.set": "castle"}, "exactly one of 'set'"),
    ({"model.arch": "vgg16"}, "leave out 'model.arch'"),
])
def test_bad_configs_are_one_line_errors_naming_the_key(trained, changes, words):
    with pytest.raises(ConfigError) as caught:
        config_of(trained, **changes)
    message = str(caught.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize("name", ["ground-truth-tutorial", "ground-truth-decreasing-gamma"])
def test_the_example_configs_load_with_a_trained_network(trained, name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.yaml"
    config = load_config(path, resolve=False, changes={"model.trained": str(trained)})
    assert config.n_settings == 256 and config.data["images"]["count"] == 500
    assert config.data["pf"]["patch_size"] == 4 and config.data["images"]["size"] == TINY.task.size


def test_the_machine_independent_config_hides_the_networks_folder(trained):
    from lrpkit.experiment.config import machine_independent

    config = config_of(trained)
    hidden = machine_independent(config.data)
    assert hidden["model"]["trained"] == "(local folder)" and config.data["model"]["trained"] == str(trained)
    assert hidden["images"]["synthetic"] == "test"


# ---- the run and its localisation columns


@pytest.fixture(scope="module")
def results(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    outcome = runner.run(config_of(trained, **{"images.count": 4}), out / "r", progress=False, estimate=False,
                         echo=lambda line: None)
    return outcome, store.read_results(out / "r")


def test_the_results_hold_the_localisation_of_every_heatmap(trained, results):
    """The columns equal lrpkit.localisation on the heatmaps recomputed outside the experiment."""
    _, table = results
    for column in agreement.LOCALISATION:
        assert column in table.columns
    config = config_of(trained, **{"images.count": 4})
    model = training.load_trained(trained)
    batch = synthetic.generate(TINY.task, 4, seed=TINY.seed, split="test")
    for setting, (gamma, epsilon) in enumerate([(g, e) for g in (0.0, 0.25) for e in (0.0, 0.25)]):
        heat = lrp.relevance(model, batch.normalized(), batch.labels, composites.tutorial(gamma, epsilon))
        rows = table[(table["setting"] == setting) & (table["order"] == "morf")].sort_values("image")
        # float32 heatmaps made in other batch layouts (a grid of one image there, one setting of four
        # images here) differ by rounding, which differs between CPUs: 8e-8 on a score in [0, 1] seen
        np.testing.assert_allclose(rows["loc_mass"], localisation.relevance_mass_accuracy(heat.double(), batch.masks),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["loc_pointing"], localisation.pointing_game(heat.double(), batch.masks))
    # a per-heatmap value: the same in the rows of every order
    assert table.groupby(["image", "setting"])["loc_mass"].nunique().max() == 1
    assert config.data["images"]["count"] == 4


def test_an_experiment_on_photos_has_no_localisation_columns(tmp_path):
    config = load_config({"composite": {"family": "tutorial"}, "grid": {"gamma": [0.0], "epsilon": [0.25]},
                          "images": {"set": "castle", "size": 32}, "model": {"factory": "experiment_models:tiny_vgg"},
                          "diagnostics": False})
    names = [c.name for m in __import__("lrpkit.experiment.metrics", fromlist=["active"]).active(config)
             for c in m.columns]
    assert "loc_mass" not in names and "auc" in names


@pytest.mark.filterwarnings("ignore:.*is NaN for:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_localisation_equals_quantus_on_heatmaps_of_the_trained_network(trained):
    """≥ 50 heatmaps of the trained network (28 images x 2 composites), lrpkit's default pooling
    (positive part of the channel sum) given to Quantus 0.6 as the attribution; rank accuracy where
    the K-th place is not tied (Quantus breaks ties by argsort, lrpkit averages over tie-breaks)."""
    quantus = pytest.importorskip("quantus", reason="Quantus 0.6.0 (the oracle) is not installed")
    model = training.load_trained(trained)
    batch = synthetic.generate(TINY.task, 28, seed=TINY.seed, split="test")
    heat = torch.cat([lrp.relevance(model, batch.normalized(), batch.labels, c)
                      for c in (composites.tutorial(), composites.decreasing_gamma())]).double()
    masks = torch.cat([batch.masks, batch.masks])
    pooled = heat.sum(1).clamp(min=0).numpy()
    n = len(pooled)
    common = dict(model=None, x_batch=np.zeros((n, 1) + pooled.shape[1:]), y_batch=np.zeros(n, dtype=int),
                  a_batch=pooled[:, None].copy(), s_batch=masks.numpy()[:, None].astype(float), batch_size=n)
    options = dict(disable_warnings=True, normalise=False, abs=False)
    usable = pooled.reshape(n, -1).sum(1) > 0              # a heatmap without positive relevance: NaN here
    for ours, theirs in ((localisation.relevance_mass_accuracy, quantus.RelevanceMassAccuracy),
                         (localisation.pointing_game, quantus.PointingGame),
                         (localisation.relevance_rank_accuracy, quantus.RelevanceRankAccuracy)):
        got = ours(heat, masks).numpy()
        expected = np.asarray(theirs(**options)(**common), dtype=np.float64)
        keep = usable.copy()
        if ours is localisation.relevance_rank_accuracy:
            flat = pooled.reshape(n, -1)
            k = masks.reshape(n, -1).sum(1).numpy()
            kth = -np.sort(-flat, axis=1)[np.arange(n), k - 1]
            keep &= (flat == kth[:, None]).sum(1) == 1
        assert keep.sum() >= 50 if ours is not localisation.relevance_rank_accuracy else keep.sum() >= 20
        assert np.abs(got[keep] - expected[keep]).max() <= 1e-6, ours.__name__


# ---- agreement


def test_kendall_tau_equals_scipys_tau_b_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, size=17).astype(float)
        y = x + rng.integers(0, 3, size=17)
        assert agreement.kendall_tau(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)
    x, y = rng.normal(size=30), rng.normal(size=30)
    x[[3, 7]] = np.nan
    keep = ~np.isnan(x)
    assert agreement.kendall_tau(x, y) == pytest.approx(scipy.stats.kendalltau(x[keep], y[keep]).statistic)
    assert np.isnan(agreement.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_rank_agreement_of_a_score_with_itself_and_with_its_negative():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(40, 12)) + np.linspace(0, 3, 12)
    same = agreement.rank_agreement(scores, scores, n_boot=200)
    assert same.tau == same.low == same.high == 1.0
    flipped = agreement.rank_agreement(scores, -scores, n_boot=200)
    assert flipped.tau == flipped.low == flipped.high == -1.0
    noisy = agreement.rank_agreement(scores, scores + rng.normal(scale=2.0, size=scores.shape), n_boot=300, seed=5)
    assert noisy.low <= noisy.tau <= noisy.high and noisy.low < noisy.high
    again = agreement.rank_agreement(scores, scores + rng.normal(scale=0.0, size=scores.shape), n_boot=300, seed=5)
    assert again == agreement.rank_agreement(scores, scores, n_boot=300, seed=5)
    assert noisy.n_images == 40 and noisy.n_settings == 12


def test_rank_agreement_errors():
    with pytest.raises(ValueError, match="same shape"):
        agreement.rank_agreement(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="level"):
        agreement.rank_agreement(np.zeros((3, 4)), np.zeros((3, 4)), level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        agreement.rank_agreement(np.zeros((3, 4)), np.zeros((3, 4)), n_boot=0)


def constructed_results():
    """A results table of 2 x 3 settings and 5 images where the MoRF AUC falls as the mass accuracy rises."""
    rng = np.random.default_rng(2)
    rows = []
    for image in range(5):
        for setting, (i, j) in enumerate([(i, j) for i in range(2) for j in range(3)]):
            mass = 0.1 * (i * 3 + j) + rng.normal(scale=0.01)
            for order in ("morf", "lrf", "random"):
                auc = {"morf": 5 - 4 * mass, "lrf": 5 + 4 * mass, "random": 5.0}[order]
                rows.append({"image": image, "composite": "tutorial", "variant": "table", "setting": setting,
                             "i": i, "j": j, "gamma": [0.0, 1.0][i],
                             "epsilon": [0.0, 0.1, 1.0][j], "order": order, "auc": auc, "loc_mass": mass,
                             "loc_rank": mass, "loc_pointing": float(j == 2)})
    return pd.DataFrame(rows)


def test_the_agreement_table_finds_both_optima_and_the_sign_of_agreement():
    table = agreement.agreement_table(constructed_results(), metrics=("loc_mass", "loc_pointing"), n_boot=100)
    mass = table.set_index(["order", "metric"]).loc[("morf", "loc_mass")]
    assert (mass["auc_gamma"], mass["auc_epsilon"]) == (1.0, 1.0) and (mass["loc_gamma"], mass["loc_epsilon"]) == (1.0, 1.0)
    assert mass["same_optimum"] and mass["tau"] == pytest.approx(-1.0) and mass["agrees"] == "yes"
    lrf = table.set_index(["order", "metric"]).loc[("lrf", "loc_mass")]
    assert lrf["tau"] == pytest.approx(1.0) and lrf["agrees"] == "yes"
    with pytest.raises(ValueError, match="no better end"):
        agreement.agreement_table(constructed_results(), orders=("random",))
    with pytest.raises(ValueError, match="no column 'loc_nothing'"):
        agreement.agreement_table(constructed_results(), metrics=("loc_nothing",))


def test_the_contour_of_a_localisation_score_stars_its_optimum_and_the_report_names_it():
    import matplotlib

    matplotlib.use("Agg")
    from lrpkit.experiment import plots, report

    results = constructed_results()
    marked = plots.contour(results, column="loc_mass")
    assert (marked["best"]["gamma"], marked["best"]["epsilon"]) == (1.0, 1.0) and not marked["constant"]
    assert "relevance mass accuracy" in marked["ax"].get_title()
    flat = plots.contour(results.assign(loc_rank=0.5), column="loc_rank")
    assert flat["constant"] and flat["best"] is None
    lines = report.report_lines(results.assign(loc_rank=0.5))
    assert any(line.startswith("loc_mass (relevance mass accuracy)") and "gamma = 1, epsilon = 1" in line
               for line in lines)
    assert any(line.startswith("loc_rank") and "the same at every setting" in line for line in lines)
