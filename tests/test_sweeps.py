"""The thesis's six qualitative sweeps (lrpkit.sweeps): batched grid calls against one call per setting."""
import math

import pytest
import torch

from experiment_models import tiny_vgg64
from lrpkit import composites, diagnostics, lrp, sweeps


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


#: FIGURES.md, Figure 3.3: each sweep's composite at value v, written out from the thesis code's notebook.
BY_HAND = {
    "zbox-gamma": lambda v, h: composites.thesis_code_uniform("gamma", gamma=v, zbox=True, heuristic=h),
    "zbox-epsilon": lambda v, h: composites.thesis_code_uniform("epsilon", epsilon=v, zbox=True, heuristic=h),
    "composite-gamma": lambda v, h: composites.thesis_code_tutorial(v, 0.25, h),
    "composite-epsilon": lambda v, h: composites.thesis_code_tutorial(0.25, v, h),
    "uniform-gamma": lambda v, h: composites.thesis_code_uniform("gamma", gamma=v, zbox=False, heuristic=h),
    "uniform-epsilon": lambda v, h: composites.thesis_code_uniform("epsilon", epsilon=v, zbox=False, heuristic=h),
}


@pytest.fixture(scope="module")
def tiny():
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return tiny_vgg64(), x


def test_the_six_sweeps_in_the_thesis_codes_order():
    assert list(sweeps.SWEEPS) == list(BY_HAND)
    assert [s.symbol for s in sweeps.SWEEPS.values()] == ["γ", "ε"] * 3


@pytest.mark.parametrize("heuristic", ["zennit", "shift"])
@pytest.mark.parametrize("key", list(BY_HAND))
def test_batched_sweep_equals_one_call_per_setting(tiny, key, heuristic):
    model, x = tiny
    chosen = torch.tensor([0.0, 1e-5, 0.1, 10.0], dtype=torch.float64)
    result = sweeps.run(model, x, key, chosen, target=7, heuristic=heuristic, chunk_size=3)
    assert result.relevance.shape == (4, 3, 32, 32) and result.values.tolist() == chosen.tolist()
    for b, v in enumerate(chosen.tolist()):
        one = lrp.explain(model, x, 7, BY_HAND[key](v, heuristic))
        assert rel_err(result.relevance[b], one.relevance[0]) <= 1e-12, (key, v)
        torch.testing.assert_close(result.explanation.layer_sums[:, b], one.layer_sums[:, 0], rtol=1e-10, atol=1e-14)
        assert result.report.verdict(b) == diagnostics.instability(one).verdict(0)
    # the sweep's value reaches the rules: the heatmaps differ
    assert rel_err(result.relevance[0], result.relevance[3]) > 1e-3


def test_thesis_values():
    v = sweeps.values(dtype=torch.float64)
    assert len(v) == 20 and v[0] == 0
    torch.testing.assert_close(v[1:], torch.tensor([10 ** (-5 + k / 3) for k in range(19)], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    assert sweeps.values(3, dtype=torch.float64).tolist() == pytest.approx([0.0, 1e-5, 10.0], rel=1e-12)
    ten = sweeps.values(10, dtype=torch.float64)
    assert math.log10(ten[2] / ten[1]) == pytest.approx(6 / 8)


def test_table_titles_and_flagged(tiny):
    model, x = tiny
    result = sweeps.run(model, x, "zbox-epsilon", [0.0, 1.0], target=7)
    assert result.titles() == ["ε = 0", "ε = 1"]
    table = result.table()
    logit = result.explanation.logits[:, 7]
    assert table["Σ R / logit"].tolist() == pytest.approx((result.relevance.sum((1, 2, 3)) / logit).tolist(), rel=1e-9)
    assert result.flagged() == [v for v, u in zip([0.0, 1.0], result.report.unstable.tolist()) if u]


@pytest.mark.parametrize("call, error, match", [
    (lambda m, x: sweeps.run(m, x, "zbox-delta"), ValueError, r"unknown sweep 'zbox-delta'; choose one of 'zbox-gamma'"),
    (lambda m, x: sweeps.run(m, x, "zbox-gamma", heuristic="vanilla"), ValueError, r"unknown heuristic 'vanilla'"),
    (lambda m, x: sweeps.run(m, x.expand(2, -1, -1, -1), "zbox-gamma"), ValueError, r"x must be one image"),
    (lambda m, x: sweeps.run(m, x, "zbox-gamma", []), ValueError, r"sweep_values is empty"),
    (lambda m, x: sweeps.run(m, x, "zbox-gamma", [-1.0]), ValueError, r"gamma|γ"),
    (lambda m, x: sweeps.values(2), ValueError, r"count must be an int >= 3"),
])
def test_errors(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(*tiny)
