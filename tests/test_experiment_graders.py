"""The experiment's second grader: ROAD and both symmetric relevance gains as metrics of one run,
against ROAD run on each setting's heatmap alone; the config's road section, the cost and bad input."""
import numpy as np
import pytest
import torch
import yaml

from experiment_models import tiny_vgg64
from lrpkit import composites, lrp, road
from lrpkit.experiment.config import ConfigError, load_config
from lrpkit.experiment.plan import cost
from lrpkit.experiment.runner import run
from lrpkit.experiment.store import ROAD_COLUMNS, read_results
from test_experiment import AXOLOTL, config_dict, one_thread, write_val  # noqa: F401 (one_thread: autouse)

ROAD = {"percentages": [25, 50, 75], "noise": 0.0}


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    return write_val(tmp_path_factory.mktemp("val"), n=2, other=0)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, val):
    out = tmp_path_factory.mktemp("graded") / "results"
    run(config_dict(val, road=ROAD), out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    return read_results(out)


def test_road_columns_follow_the_built_in_ones(graded):
    columns = list(graded.columns)
    assert [c.name for c in ROAD_COLUMNS] == columns[columns.index("road_auc"):columns.index("road_srg") + 1]
    assert columns.index("srg") == columns.index("scores") + 1
    assert columns.index("road_auc") > columns.index("diag_max_ratio")
    assert graded["road_scores"].map(len).eq(2 + len(ROAD["percentages"])).all()


def test_road_rows_equal_road_on_each_heatmap_alone(graded, val):
    """Each row's ROAD curve against lrpkit.road on that setting's heatmap in that order, one call each."""
    from lrpkit import data

    model = tiny_vgg64()
    x = data.load_image(sorted(val.glob("*.png"))[0], 32).double()
    for _, row in graded[graded["image"] == 0].iterrows():
        R = lrp.relevance(model, x, torch.tensor([AXOLOTL]), composites.tutorial(gamma=row["gamma"],
                                                                              epsilon=row["epsilon"]))
        alone = road.road(model, x, R, AXOLOTL, order=row["order"], percentages=ROAD["percentages"], patch_size=8,
                          noise=0.0, seed=3, workers=0)
        np.testing.assert_allclose(row["road_scores"], alone.scores[0].numpy(), rtol=1e-9, atol=1e-12)
        assert row["road_auc"] == pytest.approx(alone.auc.item(), rel=1e-9, abs=1e-12)


def test_symmetric_gains_are_lrf_minus_morf_of_the_same_heatmap(graded):
    for column, gain in (("auc", "srg"), ("road_auc", "road_srg")):
        wide = graded.pivot_table(index=["image", "setting"], columns="order", values=column)
        gains = graded.groupby(["image", "setting"])[gain].agg(["min", "max"])
        assert (gains["min"] == gains["max"]).all()                   # one value per heatmap, in every row
        np.testing.assert_allclose(gains["min"], wide["lrf"] - wide["morf"], rtol=0, atol=1e-12)


def test_road_off_by_default_and_srg_needs_both_orders(tmp_path, val):
    out = tmp_path / "results"
    config = config_dict(val, pf={"patch_size": 8, "batch_size": 4, "orders": ["morf", "random"]})
    run(config, out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    columns = set(read_results(out).columns)
    assert not columns & {"srg", "road_auc", "road_scores", "road_srg"}


def test_cost_counts_road_imputations(val):
    config = load_config(config_dict(val, road=ROAD))
    c = cost(config, 2)
    rows = 4 * 2 + 1                              # 4 settings in morf and lrf, the random order once
    assert c.road_imputations == 2 * rows * 3 and c.road_forward == 2 * (2 + rows * 3)
    assert cost(load_config(config_dict(val)), 2).road_imputations == 0


@pytest.mark.parametrize("road_section, words", [
    ({"percentages": [0, 50]}, "key 'road.percentages': percentages must lie in (0, 100)"),
    ({"percentages": [50, 100]}, "percentages must lie in (0, 100)"),
    ({"percentages": [10, 11]}, "round to the patch counts"),          # 16 patches of 8 px on 32 px images
    ({"noise": -0.5}, "key 'road.noise' must be a number >= 0"),
    ({"percent": [10]}, "unknown key 'road.percent'"),
    ("yes", "key 'road' must be true, false or a mapping"),
])
def test_bad_road_section_is_one_line_and_writes_nothing(tmp_path, val, road_section, words):
    out = tmp_path / "results"
    with pytest.raises(ConfigError) as error:
        run(config_dict(val, road=road_section), out, workers=0, estimate=False, progress=False,
            echo=lambda line: None)
    assert words in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_road_true_takes_roads_defaults(val):
    config = load_config(config_dict(val, road=True, images={**config_dict(val)["images"], "size": 224}))
    assert config.data["road"] == {"percentages": list(road.PERCENTAGES), "noise": 0.01}
    assert config.road_options().schedule == road.percentage_schedule(784)
    assert yaml.safe_load(config.to_yaml())["road"]["noise"] == 0.01
