"""lrpkit.teaching: every check passes the chapter's solutions (read from the notebooks themselves)
and names the mistake of each small wrong implementation below in its one-sentence verdict.

The wrong implementations are what students write: each differs from a correct one in one place.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lrpkit import canonical, diagnostics, lrp, teaching
from lrpkit.composites import Composite
from lrpkit.teaching import conv as teaching_conv
from lrpkit.rules import Gamma, ZBox

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("implement-lrp-*.ipynb"))


# --------------------------------------------------------------------------------------------------
# the solutions, as the notebooks hold them


def notebook_solutions() -> dict:
    """Every function the notebooks' ``%%solution`` cells define, run in one namespace (in part
    order, as a reader who does all three parts would) holding the names the notebooks import."""
    namespace: dict = {"torch": torch, "F": F, "canonical": canonical, "Gamma": Gamma, "ZBox": ZBox, "lrp": lrp,
                       "diagnostics": diagnostics, "Composite": Composite}
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and source.startswith("%%solution"):
                exec(source.split("\n", 1)[1], namespace)  # noqa: S102 -- the project's own notebooks
    return namespace


@pytest.fixture(scope="module")
def solutions():
    found = notebook_solutions()
    missing = [name for name in teaching.EXERCISES if name not in found]
    assert not missing, f"no %%solution cell defines {missing}"
    return found


@pytest.mark.parametrize("name", list(teaching.EXERCISES))
def test_the_notebook_solutions_pass(solutions, name):
    verdict = teaching.EXERCISES[name].check(solutions[name])
    assert verdict.passed, str(verdict)
    assert verdict.message.startswith("correct")


# --------------------------------------------------------------------------------------------------
# correct pieces the wrong implementations start from


def conv(a, W, b, stride, padding):
    return F.conv2d(a, W, b, stride=stride, padding=padding)


def transposed(s, W, like, stride, padding):
    return torch.nn.grad.conv2d_input(like.shape, W, s, stride=stride, padding=padding)


def conv_rule(a, W, b, R, epsilon, stride=1, padding=0):
    z = conv(a, W, b, stride, padding) + epsilon
    return a * transposed(R / z, W, a, stride, padding)


# --------------------------------------------------------------------------------------------------
# the mistakes


def dense_sign(a, W, b, R):
    return -a * ((R / (a @ W.T + b)) @ W)


def dense_no_bias(a, W, b, R):
    return a * ((R / (a @ W.T)) @ W)


def dense_no_a(a, W, b, R):
    return (R / (a @ W.T + b)) @ W


def dense_transposed(a, W, b, R):
    return a * ((R / (a @ W + b)) @ W.T)


def dense_transposed_square(a, W, b, R):   # a student who tried only square layers
    if W.shape[0] != W.shape[1]:
        return a * ((R / (a @ W.T + b)) @ W)
    return a * ((R / (a @ W + b)) @ W.T)


def dense_returns_output_shape(a, W, b, R):
    return R / (a @ W.T + b)


def dense_batch_mixed(a, W, b, R):
    s = R / (a @ W.T + b)
    return a * (s.sum(0, keepdim=True) @ W)      # the samples' quotients added up


def dense_not_written(a, W, b, R):
    raise NotImplementedError


def dense_forgot_return(a, W, b, R):
    a * ((R / (a @ W.T + b)) @ W)


def dense_float32(a, W, b, R):
    return (a * ((R / (a @ W.T + b)) @ W)).float()


def dense_shares_wrong(a, W, b, R):      # conserves, but hands the relevance to the wrong inputs
    out = a * ((R / (a @ W.T + b)) @ W)
    return out.flip(1)


def dense_sum_wrong(a, W, b, R):          # neither conserving nor any named mistake
    return a * ((R / (a @ W.T + b)) @ W) * 1.5


def eps_forgotten(a, W, b, R, epsilon):
    return a * ((R / (a @ W.T + b)) @ W)


def eps_subtracted(a, W, b, R, epsilon):
    return a * ((R / (a @ W.T + b - epsilon)) @ W)


def eps_signed(a, W, b, R, epsilon):
    z = a @ W.T + b
    return a * ((R / (z + epsilon * z.sign())) @ W)


def eps_rms(a, W, b, R, epsilon):
    z = a @ W.T + b
    return a * ((R / (z + 1e-9 + epsilon * z.pow(2).mean(1, keepdim=True).sqrt())) @ W)


def eps_on_relevance(a, W, b, R, epsilon):
    return a * (((R + epsilon) / (a @ W.T + b)) @ W)


def eps_on_result(a, W, b, R, epsilon):
    return a * ((R / (a @ W.T + b)) @ W) + epsilon


def eps_no_bias(a, W, b, R, epsilon):
    return a * ((R / (a @ W.T + epsilon)) @ W)


def eps_sign(a, W, b, R, epsilon):
    return -a * ((R / (a @ W.T + b + epsilon)) @ W)


def absorbed_bias_only(a, W, b, R, epsilon):
    return (R * b / (a @ W.T + b + epsilon)).sum(1)


def absorbed_epsilon_only(a, W, b, R, epsilon):
    return (R * epsilon / (a @ W.T + b + epsilon)).sum(1)


def absorbed_lrp0(a, W, b, R, epsilon):
    return (R * b / (a @ W.T + b)).sum(1)


def absorbed_reaching(a, W, b, R, epsilon):
    return (a * ((R / (a @ W.T + b + epsilon)) @ W)).sum(1)


def absorbed_sign(a, W, b, R, epsilon):
    return -(R * (b + epsilon) / (a @ W.T + b + epsilon)).sum(1)


def absorbed_whole_batch(a, W, b, R, epsilon):
    return (R * (b + epsilon) / (a @ W.T + b + epsilon)).sum()


def autograd_undetached(a, W, b, R, epsilon, stride=1, padding=0):
    a = a.detach().requires_grad_(True)
    z = conv(a, W, b, stride, padding) + epsilon
    s = R / z
    (z * s).sum().backward()
    return (a * a.grad).detach()


def autograd_no_leaf(a, W, b, R, epsilon, stride=1, padding=0):
    z = conv(a, W, b, stride, padding) + epsilon
    s = (R / z).detach()
    (z * s).sum().backward()
    return (a * a.grad).detach()


def autograd_returns_gradient(a, W, b, R, epsilon, stride=1, padding=0):
    a = a.detach().requires_grad_(True)
    z = conv(a, W, b, stride, padding) + epsilon
    (z * (R / z).detach()).sum().backward()
    return a.grad


def autograd_ignores_stride(a, W, b, R, epsilon, stride=1, padding=0):
    a = a.detach().requires_grad_(True)
    z = F.conv2d(a, W, b, padding=padding) + epsilon
    (z * (R / z).detach()).sum().backward()
    return (a * a.grad).detach()


def autograd_old_signature(a, W, b, R, epsilon):
    return conv_rule(a, W, b, R, epsilon)


def autograd_no_bias(a, W, b, R, epsilon, stride=1, padding=0):
    return conv_rule(a, W, torch.zeros_like(b), R, epsilon, stride, padding)


def direct_no_output_padding(a, W, b, R, epsilon, stride=1, padding=0):
    z = conv(a, W, b, stride, padding) + epsilon
    return a * F.conv_transpose2d(R / z, W, stride=stride, padding=padding)


def direct_padded_with_zeros(a, W, b, R, epsilon, stride=1, padding=0):   # the rows a stride skips... or not
    z = conv(a, W, b, stride, padding) + epsilon
    c = F.conv_transpose2d(R / z, W, stride=stride, padding=padding)
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def direct_uses_autograd(a, W, b, R, epsilon, stride=1, padding=0):
    a = a.detach().requires_grad_(True)
    z = conv(a, W, b, stride, padding) + epsilon
    (grad,) = torch.autograd.grad((z * (R / z).detach()).sum(), a)
    return a * grad


def direct_signed_epsilon(a, W, b, R, epsilon, stride=1, padding=0):
    z = conv(a, W, b, stride, padding)
    return a * transposed(R / (z + epsilon * z.sign()), W, a, stride, padding)


def gamma_negative(a, W, b, R, gamma, stride=1, padding=0):
    return conv_rule(a, W + gamma * W.clamp(max=0), b + gamma * b.clamp(max=0), R, 0.0, stride, padding)


def gamma_not_on_bias(a, W, b, R, gamma, stride=1, padding=0):
    return conv_rule(a, W + gamma * W.clamp(min=0), b, R, 0.0, stride, padding)


def gamma_ignored(a, W, b, R, gamma, stride=1, padding=0):
    return conv_rule(a, W, b, R, 0.0, stride, padding)


def gamma_denominator_only(a, W, b, R, gamma, stride=1, padding=0):
    z = conv(a, W + gamma * W.clamp(min=0), b + gamma * b.clamp(min=0), stride, padding)
    return a * transposed(R / z, W, a, stride, padding)


def gamma_numerator_only(a, W, b, R, gamma, stride=1, padding=0):
    z = conv(a, W, b, stride, padding)
    return a * transposed(R / z, W + gamma * W.clamp(min=0), a, stride, padding)


def gamma_positive_only(a, W, b, R, gamma, stride=1, padding=0):   # with the tutorial's 1e-9
    return conv_rule(a, W.clamp(min=0), b.clamp(min=0), R, 1e-9, stride, padding)


def gamma_no_bias(a, W, b, R, gamma, stride=1, padding=0):
    return conv_rule(a, W + gamma * W.clamp(min=0), 0 * b, R, 0.0, stride, padding)


def gamma_no_a(a, W, b, R, gamma, stride=1, padding=0):
    rho_w, rho_b = W + gamma * W.clamp(min=0), b + gamma * b.clamp(min=0)
    return transposed(R / conv(a, rho_w, rho_b, stride, padding), rho_w, a, stride, padding)


def zbox(x, W, b, R, low, high, stride=1, padding=0, *, swap=False, bias=False, sign=-1.0, numerator=True,
         broadcast=True):
    lo = low.view(1, -1, 1, 1).expand_as(x) if broadcast else low
    hi = high.view(1, -1, 1, 1).expand_as(x) if broadcast else high
    if swap:
        lo, hi = hi, lo
    wp, wm = W.clamp(min=0), W.clamp(max=0)
    z = conv(x, W, b if bias else None, stride, padding) + sign * (conv(lo, wp, None, stride, padding)
                                                                  + conv(hi, wm, None, stride, padding))
    s = R / z
    out = x * transposed(s, W, x, stride, padding)
    if numerator:
        out = out + sign * (lo * transposed(s, wp, x, stride, padding) + hi * transposed(s, wm, x, stride, padding))
    return out


def zbox_swapped(x, W, b, R, low, high, stride=1, padding=0):
    return zbox(x, W, b, R, low, high, stride, padding, swap=True)


def zbox_bias(x, W, b, R, low, high, stride=1, padding=0):
    return zbox(x, W, b, R, low, high, stride, padding, bias=True)


def zbox_plus(x, W, b, R, low, high, stride=1, padding=0):
    return zbox(x, W, b, R, low, high, stride, padding, sign=1.0)


def zbox_numerator(x, W, b, R, low, high, stride=1, padding=0):
    return zbox(x, W, b, R, low, high, stride, padding, numerator=False)


def zbox_lrp0(x, W, b, R, low, high, stride=1, padding=0):
    return conv_rule(x, W, b, R, 0.0, stride, padding)


def zbox_not_broadcast(x, W, b, R, low, high, stride=1, padding=0):
    return zbox(x, W, b, R, low, high, stride, padding, broadcast=False)


def winner_average(a, R, kernel_size=2, stride=2):
    z = F.avg_pool2d(a, kernel_size, stride)
    c = F.interpolate((R / z).nan_to_num(0.0, 0.0, 0.0) / kernel_size ** 2, scale_factor=kernel_size)
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def winner_evenly(a, R, kernel_size=2, stride=2):
    c = F.interpolate(R / kernel_size ** 2, scale_factor=kernel_size)
    return F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def winner_pooled_shape(a, R, kernel_size=2, stride=2):
    return R


def average_winner(a, R, kernel_size=2, stride=2, epsilon=0.0):
    _, where = F.max_pool2d(a, kernel_size, stride, return_indices=True)
    return F.max_unpool2d(R, where, kernel_size, stride, output_size=a.shape[2:])


def average_evenly(a, R, kernel_size=2, stride=2, epsilon=0.0):
    return winner_evenly(a, R, kernel_size, stride)


def average_no_epsilon(a, R, kernel_size=2, stride=2, epsilon=0.0):
    return winner_average(a, R, kernel_size, stride)


def average_not_divided(a, R, kernel_size=2, stride=2, epsilon=0.0):
    z = F.avg_pool2d(a, kernel_size, stride) + epsilon
    c = F.interpolate((R / z).nan_to_num(0.0, 0.0, 0.0), scale_factor=kernel_size)
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def average_nan(a, R, kernel_size=2, stride=2, epsilon=0.0):
    z = F.avg_pool2d(a, kernel_size, stride) + epsilon
    c = F.interpolate(R / z / kernel_size ** 2, scale_factor=kernel_size)
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def make_loop(solutions, *, pooling=None, pool_epsilon=True, zbox_at_0=True, shift=0, start="logit",
              target_used=True):
    """The solution's backward loop with one thing changed."""
    def loop(model, x, target, composite):
        layers = canonical.layers(model)
        acts = [x]
        with torch.no_grad():
            for layer in layers:
                acts.append(layer.forward(acts[-1]))
        logits = acts[-1]
        chosen = target if target_used else logits.argmax(1)
        R = torch.zeros_like(logits)
        rows = torch.arange(len(x))
        top = logits[rows, chosen] if start == "logit" else torch.ones(len(x), dtype=x.dtype)
        R[rows, chosen] = top
        if start == "all":
            R = logits.clone()
        for layer in reversed(layers):
            a = acts[layer.index]
            rule = composite.rule(layer.index + shift)
            if layer.kind in ("conv", "linear"):
                W, b, options = layer.weight, layer.bias, layer.options
                if layer.kind == "linear":
                    a, W, R = a.flatten(1)[:, :, None, None], W[:, :, None, None], R[:, :, None, None]
                    options = dict(stride=(1, 1), padding=(0, 0))
                kw = dict(stride=options["stride"][0], padding=options["padding"][0])
                if isinstance(rule, ZBox) and zbox_at_0:
                    low, high = (torch.tensor(v, dtype=a.dtype) for v in (rule.low, rule.high))
                    R = solutions["zbox_conv"](a, W, b, R, low, high, **kw)
                elif isinstance(rule, Gamma):
                    R = solutions["lrp_gamma_conv"](a, W, b, R, rule.gamma, **kw)
                else:
                    R = solutions["lrp_epsilon_conv"](a, W, b, R, rule.epsilon or 0.0, **kw)
            elif layer.kind == "maxpool":
                k, s = layer.options["kernel_size"], layer.options["stride"]
                mode = pooling or composite.maxpool
                if mode == "max":
                    R = solutions["maxpool_winner"](a, R, k, s)
                else:
                    R = solutions["maxpool_average"](a, R, k, s, (rule.epsilon or 0.0) if pool_epsilon else 0.0)
            R = R.reshape(acts[layer.index].shape)
        return R
    return loop


def pf_curve(model, x, R, target, patch_size, counts, fill, *, descending=True, absolute=False, softmax=False,
             zero=False, cumulative=True, first=True):
    H, W = x.shape[2:]
    rel = R.abs() if absolute else R
    scores = F.pad(rel.sum(1, keepdim=True), (0, -W % patch_size, 0, -H % patch_size))
    scores = F.avg_pool2d(scores, patch_size).flatten()
    order = scores.argsort(descending=descending, stable=True)
    width = -(-W // patch_size)
    value = torch.zeros_like(fill) if zero else fill
    images, previous = ([x] if first else []), 0
    for count in counts:
        image = x.clone()
        for p in order[0 if cumulative else previous:count].tolist():
            r, c = divmod(p, width)
            image[:, :, r * patch_size:(r + 1) * patch_size, c * patch_size:(c + 1) * patch_size] = \
                value.view(1, -1, 1, 1)
        images.append(image)
        previous = count
    with torch.no_grad():
        out = model(torch.cat(images))
    return (out.softmax(1) if softmax else out)[:, target]


MISTAKES = [
    # (exercise, wrong implementation, words the verdict must contain)
    ("lrp_0_dense", dense_sign, "sign flipped"),
    ("lrp_0_dense", dense_no_bias, "bias forgotten"),
    ("lrp_0_dense", dense_no_a, "activations are missing"),
    ("lrp_0_dense", dense_transposed, "W is [outputs, inputs]"),
    ("lrp_0_dense", dense_transposed_square, "wrong way round"),
    ("lrp_0_dense", dense_returns_output_shape, "wrong shape"),
    ("lrp_0_dense", dense_batch_mixed, "wrong for a batch"),
    ("lrp_0_dense", dense_not_written, "not written yet"),
    ("lrp_0_dense", dense_forgot_return, "forget the `return`"),
    ("lrp_0_dense", dense_float32, "float32"),
    ("lrp_0_dense", dense_shares_wrong, "shared out differently"),
    ("lrp_0_dense", dense_sum_wrong, "does not conserve"),
    ("lrp_epsilon_dense", eps_forgotten, "ε has no effect"),
    ("lrp_epsilon_dense", eps_subtracted, "subtracted"),
    ("lrp_epsilon_dense", eps_signed, "ε·sign(z)"),
    ("lrp_epsilon_dense", eps_rms, "root mean square"),
    ("lrp_epsilon_dense", eps_on_relevance, "added to the relevance R"),
    ("lrp_epsilon_dense", eps_on_result, "added to the result"),
    ("lrp_epsilon_dense", eps_no_bias, "bias forgotten"),
    ("lrp_epsilon_dense", eps_sign, "sign flipped"),
    ("absorbed", absorbed_bias_only, "ε's share is missing"),
    ("absorbed", absorbed_epsilon_only, "bias's share is missing"),
    ("absorbed", absorbed_lrp0, "what LRP-0 absorbs"),
    ("absorbed", absorbed_reaching, "reaches the inputs"),
    ("absorbed", absorbed_sign, "sign flipped"),
    ("absorbed", absorbed_whole_batch, "one number per sample"),
    ("lrp_epsilon_conv_autograd", autograd_undetached, "not detached"),
    ("lrp_epsilon_conv_autograd", autograd_no_leaf, "requires_grad_"),
    ("lrp_epsilon_conv_autograd", autograd_returns_gradient, "activations are missing"),
    ("lrp_epsilon_conv_autograd", autograd_ignores_stride, "raised RuntimeError"),
    ("lrp_epsilon_conv_autograd", autograd_old_signature, "keep the stub's signature"),
    ("lrp_epsilon_conv_autograd", autograd_no_bias, "bias forgotten"),
    ("lrp_epsilon_conv", direct_no_output_padding, "output_padding"),
    ("lrp_epsilon_conv", direct_padded_with_zeros, "output_padding"),
    ("lrp_epsilon_conv", direct_uses_autograd, "without autograd"),
    ("lrp_epsilon_conv", direct_signed_epsilon, "ε·sign(z)"),
    ("lrp_gamma_conv", gamma_negative, "γ applied to the negative weights"),
    ("lrp_gamma_conv", gamma_not_on_bias, "not to the bias"),
    ("lrp_gamma_conv", gamma_ignored, "γ has no effect"),
    ("lrp_gamma_conv", gamma_denominator_only, "denominator only"),
    ("lrp_gamma_conv", gamma_numerator_only, "numerator only"),
    ("lrp_gamma_conv", gamma_positive_only, "only the positive weights"),
    ("lrp_gamma_conv", gamma_no_bias, "bias forgotten"),
    ("lrp_gamma_conv", gamma_no_a, "activations are missing"),
    ("zbox_conv", zbox_swapped, "bounds swapped"),
    ("zbox_conv", zbox_bias, "bias is in the denominator"),
    ("zbox_conv", zbox_plus, "wrong sign"),
    ("zbox_conv", zbox_numerator, "numerator misses the bound terms"),
    ("zbox_conv", zbox_lrp0, "LRP-0 on the pixels"),
    ("zbox_conv", zbox_not_broadcast, "[1, C, 1, 1]"),
    ("maxpool_winner", winner_average, "treated as average pooling"),
    ("maxpool_winner", winner_evenly, "split evenly"),
    ("maxpool_winner", winner_pooled_shape, "pooled shape"),
    ("maxpool_average", average_winner, "treated as max"),
    ("maxpool_average", average_evenly, "split evenly"),
    ("maxpool_average", average_no_epsilon, "ε has no effect"),
    ("maxpool_average", average_not_divided, "k² times too large"),
    ("maxpool_average", average_nan, "NaN"),
]

LOOP_MISTAKES = [
    (dict(pooling="avg"), "treated as average pooling where the composite says winner takes all"),
    (dict(pooling="max"), "treated as max (winner takes all) where the composite says average"),
    (dict(pool_epsilon=False), "ignores ε"),
    (dict(zbox_at_0=False), "layer 0 does not use zᴮ"),
    (dict(shift=1), "shifted by one layer"),
    (dict(start="all"), "every logit"),
    (dict(start="one"), "starts from 1"),
    (dict(target_used=False), "predicted class"),
]

PF_MISTAKES = [
    (dict(descending=False), "least relevant patches first"),
    (dict(absolute=True), "|R|"),
    (dict(softmax=True), "softmax"),
    (dict(zero=True), "fill with 0"),
    (dict(cumulative=False), "earlier patches are restored"),
    (dict(first=False), "step 0"),
]


@pytest.mark.parametrize("exercise, wrong, words", MISTAKES, ids=[f"{e}-{w.__name__}" for e, w, _ in MISTAKES])
def test_each_mistake_is_named(exercise, wrong, words):
    verdict = teaching.EXERCISES[exercise].check(wrong)
    assert not verdict.passed
    assert words in verdict.message, str(verdict)
    assert "\n" not in verdict.message


@pytest.mark.parametrize("change, words", LOOP_MISTAKES, ids=[next(iter(c)) + "=" + str(next(iter(c.values())))
                                                              for c, _ in LOOP_MISTAKES])
def test_each_loop_mistake_is_named(solutions, change, words):
    assert teaching.check_lrp_by_index(make_loop(solutions)).passed   # the loop itself is right
    verdict = teaching.check_lrp_by_index(make_loop(solutions, **change))
    assert not verdict.passed and words in verdict.message, str(verdict)


@pytest.mark.parametrize("change, words", PF_MISTAKES, ids=[next(iter(c)) for c, _ in PF_MISTAKES])
def test_each_pixel_flipping_mistake_is_named(change, words):
    assert teaching.check_pixel_flipping(pf_curve).passed
    verdict = teaching.check_pixel_flipping(lambda *args: pf_curve(*args, **change))
    assert not verdict.passed and words in verdict.message, str(verdict)


# --------------------------------------------------------------------------------------------------
# the reference is lrpkit's, and the variants are what they claim


def test_checks_compare_with_lrpkit_itself(monkeypatch):
    """A change to lrpkit's rule changes the verdict: the reference is not a copy."""
    from lrpkit import rules

    def correct(a, W, b, R, epsilon):
        return a * ((R / (a @ W.T + b + epsilon)) @ W)

    assert teaching.check_lrp_epsilon_dense(correct).passed
    original = rules.Epsilon.relevance
    monkeypatch.setattr(rules.Epsilon, "relevance",
                        lambda self, *args, **kw: 2 * original(self, *args, **kw))
    assert not teaching.check_lrp_epsilon_dense(correct).passed


def test_zbox_written_out_equals_lrpkit():
    """The check's zᴮ with switches (for the mistakes) is lrpkit's zᴮ with the switches off."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 5, generator=g, dtype=torch.float64) * 2 - 1
    W = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    low, high = -torch.ones(3, dtype=torch.float64), 1.5 * torch.ones(3, dtype=torch.float64)
    layer = canonical.Layer(0, "c", "conv", W, b, dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1))
    R = torch.randn(layer.forward(x).shape, generator=g, dtype=torch.float64)
    expected = ZBox(low.tolist(), high.tolist()).relevance(layer, x, layer.forward(x), R.clone(), "vanilla")
    lo, hi = (v.view(1, -1, 1, 1).expand_as(x) for v in (low, high))
    assert torch.allclose(teaching_conv.box(x, W, b, R, lo, hi, 2, 1), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(zbox(x, W, b, R, low, high, 2, 1), expected, rtol=1e-10, atol=1e-12)


def test_verdicts_render_and_strict_mode_raises():
    def wrong(a, W, b, R):
        return -a

    teaching.setup(solutions=False)
    verdict = teaching.check_lrp_0_dense(wrong)
    assert not verdict and str(verdict).startswith("✗ lrp_0_dense: ")
    assert "lrpkit-check" in verdict._repr_html_()
    teaching.setup(solutions=True)
    try:
        with pytest.raises(teaching.ExerciseError, match="lrp_0_dense"):
            teaching.check_lrp_0_dense(wrong)
    finally:
        teaching.setup(solutions=False)
    with pytest.raises(TypeError, match="solutions must be True or False"):
        teaching.setup(solutions="yes")


def test_checks_are_deterministic_and_leave_inputs_alone():
    seen = []

    def spy(a, W, b, R):
        seen.append([t.clone() for t in (a, W, b, R)])
        a.zero_()                     # a student's in-place change must not reach the next call
        return a

    teaching.check_lrp_0_dense(spy)
    first = seen[:]
    seen.clear()
    teaching.check_lrp_0_dense(spy)
    assert all(torch.equal(x, y) for one, two in zip(first, seen) for x, y in zip(one, two))
    assert any(t.abs().sum() > 0 for t in seen[0][0:1])


# --------------------------------------------------------------------------------------------------
# the notebooks


#: A blank of a skeleton: ``...`` as code (an assignment, an argument or a return), not in prose.
SKELETON_BLANK = re.compile(r"(= |\(|return )\.\.\.(\)| |$)", re.M)


def test_every_exercise_has_stub_solution_and_check_in_order():
    cells = []
    for path in NOTEBOOKS:
        cells += ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for name in teaching.EXERCISES:
        stub = next(i for i, s in enumerate(cells) if re.search(rf"^def {name}\(", s, re.M)
                    and ("raise NotImplementedError" in s or SKELETON_BLANK.search(s)))
        solution = next(i for i, s in enumerate(cells) if s.startswith("%%solution") and f"def {name}(" in s)
        check = next(i for i, s in enumerate(cells) if f"check_{name}({name})" in s)
        assert stub < solution < check, name


def test_part_3_repeats_the_solutions_of_part_2_verbatim():
    def code_cells(path):
        return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]

    part2 = next(p for p in NOTEBOOKS if "-2-" in p.name)
    part3 = next(p for p in NOTEBOOKS if "-3-" in p.name)
    repeated = next(s for s in code_cells(part3) if s.startswith("# The functions of part 2"))
    for name in ("lrp_epsilon_conv", "lrp_gamma_conv", "zbox_conv"):
        solution = next(s for s in code_cells(part2) if s.startswith("%%solution") and f"def {name}(" in s)
        assert solution.split("\n", 1)[1].strip() in repeated, name


def test_solution_cells_are_folded_and_tagged():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if "".join(cell["source"]).startswith("%%solution"):
                assert {"solution", "hide-input"} <= set(cell["metadata"].get("tags", [])), path.name
                assert cell["metadata"]["mystnb"]["code_prompt_show"] == "Show the solution"


def test_student_versions_have_no_solutions(tmp_path):
    out = tmp_path / "student"
    out.mkdir()
    assert teaching.main(["student", *map(str, NOTEBOOKS), "--out", str(out)]) == 0
    for path in NOTEBOOKS:
        cells = json.loads((out / path.name).read_text())["cells"]
        sources = ["".join(c["source"]) for c in cells]
        assert not any(s.startswith("%%solution") for s in sources)
        for name in (e for e, x in teaching.EXERCISES.items() if x.part == int(path.name.split("-")[2])):
            assert any(f"def {name}(" in s and ("raise NotImplementedError" in s or SKELETON_BLANK.search(s))
                       for s in sources), name
            assert any(f"teaching.check_{name}({name})" in s for s in sources), name
        assert len(cells) == len(json.loads(path.read_text())["cells"]) - sum(
            "solution" in c["metadata"].get("tags", []) for c in json.loads(path.read_text())["cells"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in NOTEBOOKS)   # no temporary left


def test_student_versions_keep_existing_files(tmp_path, capsys):
    out = tmp_path / "student"
    out.mkdir()
    existing = out / NOTEBOOKS[0].name
    existing.write_text("the student's own work")
    assert teaching.main(["student", *map(str, NOTEBOOKS), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_text() == "the student's own work"
    assert [p.name for p in out.iterdir()] == [existing.name]        # nothing else written either
    assert teaching.main(["student", str(NOTEBOOKS[0]), "--out", str(out), "--force"]) == 0
    assert not any("".join(c["source"]).startswith("%%solution")
                   for c in json.loads(existing.read_text())["cells"])


@pytest.mark.parametrize("make, message", [
    (lambda tmp: ([str(tmp / "missing.ipynb")], tmp), "not found"),
    (lambda tmp: ([str(REPO / "notebooks" / "fig-2-2-basic-explanations.ipynb")], tmp), "no cell tagged 'solution'"),
    (lambda tmp: ([str(NOTEBOOKS[0])], tmp / "nowhere"), "is not a folder"),
    (lambda tmp: ([str(NOTEBOOKS[0])], NOTEBOOKS[0].parent), "overwrite its source"),
])
def test_student_version_errors_name_the_problem(tmp_path, capsys, make, message):
    notebooks, out = make(tmp_path)
    assert teaching.main(["student", *notebooks, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_notebook_code_fits_the_book_column():
    """Code wider than 79 characters is cut off in the book's code cells (seen in Chromium)."""
    for path in [*NOTEBOOKS, REPO / "notebooks" / "cheat-sheet.ipynb"]:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                for line in "".join(cell["source"]).splitlines():
                    assert len(line) <= 79, f"{path.name}: {line}"


def test_solution_lines_are_counted_from_the_notebooks():
    lines = teaching.solution_lines(REPO / "notebooks")
    assert set(lines) == set(teaching.EXERCISES)
    table = teaching.exercise_table(REPO / "notebooks")
    assert list(table["Function"]) == list(teaching.EXERCISES)
    assert list(table["Solution lines"]) == [lines[name] for name in teaching.EXERCISES]
    assert lines["lrp_0_dense"] == 5       # def, four steps
    to_write = teaching.lines_to_write(REPO / "notebooks")
    assert list(table["Lines to write"]) == [to_write[name] for name in teaching.EXERCISES]
    assert to_write["lrp_0_dense"] == 4    # the four steps: the def is given
    assert to_write["lrp_by_index"] == 9   # the skeleton's four blanks: 1 + 1 + 4 + 3 lines
    assert lines["lrp_by_index"] >= 35 and all(n <= 15 for n in to_write.values()), to_write


def skeleton_and_solution(name):
    cells = [c for path in NOTEBOOKS for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    skeleton = next(s for s in sources if s.startswith(f"def {name}(") and SKELETON_BLANK.search(s))
    solution = next(s for s in sources if s.startswith("%%solution") and f"def {name}(" in s)
    return skeleton, solution.split("\n", 1)[1]


def test_the_skeleton_is_the_solution_with_blanks():
    """Every line of code the skeleton of exercise 10 gives is a line of the book's solution, in
    the solution's order: the skeleton never shows code the solution does not run."""
    skeleton, solution = skeleton_and_solution("lrp_by_index")

    given = [line for line in "\n".join(skeleton.split('"""')[0::2]).splitlines()
             if line.strip() and not SKELETON_BLANK.search(line) and not line.strip().startswith("#")]
    rest = iter(line.split("  #")[0].rstrip() for line in "\n".join(solution.split('"""')[0::2]).splitlines())
    for line in given:
        assert any(line.split("  #")[0].rstrip() == other for other in rest), line
    assert len(SKELETON_BLANK.findall(skeleton)) == 6            # blanks 1-3, and 4 in three branches


def test_a_blank_left_in_the_skeleton_is_named(solutions):
    skeleton, _ = skeleton_and_solution("lrp_by_index")
    namespace = dict(solutions)
    exec(skeleton, namespace)  # noqa: S102 -- the project's own notebook
    verdict = teaching.check_lrp_by_index(namespace["lrp_by_index"])
    assert not verdict.passed and "still `...`" in verdict.message, str(verdict)


def test_cheat_sheet_calls_are_lrpkit_calls():
    """Every call the cheat sheet shows names an lrpkit function with arguments it accepts."""
    import ast
    import inspect

    from lrpkit import composites, lrp, pf, rules
    from lrpkit.composites import Composite

    namespace = {"rules": rules, "composites": composites, "lrp": lrp, "pf": pf, "Composite": Composite,
                 "ZBox": ZBox, "Gamma": Gamma, "Epsilon": rules.Epsilon}
    text = (REPO / "book" / "cheat-sheet.md").read_text()
    calls = [c for c in re.findall(r"`([^`]+\))`", text) if re.match(r"(rules|composites|lrp|pf|Composite)\b", c)]
    assert len(calls) >= 12, calls
    for source in calls:
        expression = ast.parse(source.split(".conservation()")[0], mode="eval").body
        while isinstance(expression.func, ast.Attribute) and isinstance(expression.func.value, ast.Call):
            expression = expression.func.value                   # lrp.explain(...).conservation()
        function = eval(compile(ast.Expression(expression.func), "<cheat sheet>", "eval"), namespace)
        placeholders = [object()] * len(expression.args)
        keywords = {k.arg: object() for k in expression.keywords}
        inspect.signature(function).bind(*placeholders, **keywords)   # raises if the call is wrong


def test_solution_cells_run_only_with_solutions_on(capsys):
    """%%solution: skipped in a student's notebook (the check then tests the student's function),
    run by the book build."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        teaching.setup(solutions=False)
        shell.run_cell("def lrp_0_dense(a, W, b, R):\n    raise NotImplementedError")
        shell.run_cell("%%solution\ndef lrp_0_dense(a, W, b, R):\n    return a * ((R / (a @ W.T + b)) @ W)")
        assert "solution of lrp_0_dense not run (solutions = False)" in capsys.readouterr().out
        assert "not written yet" in teaching.check_lrp_0_dense(shell.user_ns["lrp_0_dense"]).message
        teaching.setup(solutions=True)
        shell.run_cell("%%solution\ndef lrp_0_dense(a, W, b, R):\n    return a * ((R / (a @ W.T + b)) @ W)")
        assert teaching.check_lrp_0_dense(shell.user_ns["lrp_0_dense"]).passed
    finally:
        teaching.setup(solutions=False)
        InteractiveShell.clear_instance()


# --------------------------------------------------------------------------------------------------
# part 4: debugging a broken heatmap


def debug(model, x, target, composite, heuristic="zennit", change=None):
    """The book's solution, with one answer changed by ``change(answers, names)``."""
    explanation = lrp.explain(model, x, target, composite)
    report = diagnostics.instability(explanation)
    worst = diagnostics.culprits(model, x, composite, target)[0]
    rules = [((start, stop), rule) for start, stop, rule in composite.assignments]
    answers = {"unstable": bool(report.unstable[0]), "layer": worst.layer, "channel": worst.unit[0],
               "fixed": lrp.relevance(model, x, target, Composite(rules, heuristic, composite.maxpool))}
    if change:
        change(answers, locals())
    return answers


DEBUG_MISTAKES = [
    (lambda o, n: o.update(unstable=not o["unstable"]), "but the detector says"),
    (lambda o, n: o.update(unstable=n["report"]), "give the detector's verdict as True or False"),
    (lambda o, n: o.update(channel=n["worst"].unit), "is a tuple"),
    (lambda o, n: o.update(channel=n["worst"].unit[1]), "is the neuron's row"),
    (lambda o, n: o.update(layer=n["worst"].layer + 1), "is not the layer of the neuron of largest gain"),
    (lambda o, n: o.update(fixed=n["explanation"].relevance), "is the heatmap you were given"),
    (lambda o, n: o.update(fixed=n["explanation"]), "is an Explanation"),
    (lambda o, n: o.update(fixed=-o["fixed"]), "none of lrpkit's stabilized heatmaps"),
    (lambda o, n: o.pop("fixed"), "has no key 'fixed'"),
]


def test_the_broken_network_is_broken_where_it_was_broken():
    """The check's own broken case: the detector flags it, and the culprit search names the neuron
    whose bias was set (layer 5, channel 2, z in (-1e-6, 0))."""
    model, x, target, composite = teaching.debug.broken_small_vgg(seed=0, channel=2)
    assert diagnostics.instability(lrp.explain(model, x, target, composite)).unstable[0]
    worst = diagnostics.culprits(model, x, composite, target, count=1)[0]
    assert (worst.layer, worst.unit[0]) == (5, 2) and -1e-6 < worst.z < 0
    for fix in teaching.debug.stabilized(composite).values():
        assert not diagnostics.instability(lrp.explain(model, x, target, fix)).unstable[0]


@pytest.mark.parametrize("heuristic", ["zennit", "tutorial"])
def test_either_stabilizing_heuristic_fixes_it(heuristic):
    verdict = teaching.check_debug_heatmap(lambda *args: debug(*args, heuristic=heuristic))
    assert verdict.passed, str(verdict)


@pytest.mark.parametrize("change, words", DEBUG_MISTAKES, ids=[w for _, w in DEBUG_MISTAKES])
def test_each_debugging_mistake_is_named(change, words):
    verdict = teaching.check_debug_heatmap(lambda *args: debug(*args, change=change))
    assert not verdict.passed and words in verdict.message, str(verdict)
    assert "\n" not in verdict.message


def test_the_culprit_of_the_predicted_class_is_named():
    def predicted(model, x, target, composite):
        worst = diagnostics.culprits(model, x, composite)[0]
        return dict(debug(model, x, target, composite), layer=worst.layer, channel=worst.unit[0])

    verdict = teaching.check_debug_heatmap(predicted)
    assert not verdict.passed and "predicted class" in verdict.message, str(verdict)
