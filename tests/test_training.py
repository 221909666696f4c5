"""Training a network of VGG-16's layout on the ground-truth task (lrpkit.training): the network's
canonical layers against torchvision's vgg16_bn, LRP on it (conservation, and Gradient × Input through
the unfolded batch norms as the oracle of the folding), a short training that learns, determinism,
continuing after Ctrl-C to the same weights, the folder's rules, and one-line errors.

Every training here runs with one torch thread, on tiny configs (32 px, narrow): the whole file
takes well under a minute.
"""
import dataclasses
import json
import os

import pytest
import torch
import torchvision
from torch import nn

from conftest import assert_conserved
from lrpkit import canonical, composites, data, lrp, models, synthetic, training
from lrpkit.synthetic import TaskConfig
from lrpkit.training import TrainingConfig

needs_photos = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                  reason=f"no image mirror ({data.MIRROR_ENV} unset)")

#: A tiny training: 24 batches of 32 at 32 px, a network of 1/16 of VGG-16's widths.
TINY = TrainingConfig(task=TaskConfig(size=32), images=768, eval_images=64, width=4, hidden=16)
#: Images between its checkpoints (3 checkpoints: 256, 512; none at the end).
EVERY = 256
QUIET = dict(progress=False, echo=lambda line: None)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """TINY trained without interruption: its folder and result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if not os.environ.get(data.MIRROR_ENV):
            pytest.skip(f"no image mirror ({data.MIRROR_ENV} unset)")
        folder = tmp_path_factory.mktemp("tiny")
        return folder, training.train(TINY, folder, checkpoint_every=EVERY, **QUIET)
    finally:
        torch.set_num_threads(threads)


def files(folder):
    """Every file of the folder (temporary ones included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def interrupt_at(monkeypatch, images):
    """Ctrl-C when the training is about to take the batch after ``images`` images."""
    real = training._learning_rate

    def learning_rate(config, seen):
        if seen == images:
            raise KeyboardInterrupt
        return real(config, seen)

    monkeypatch.setattr(training, "_learning_rate", learning_rate)


# --------------------------------------------------------------------------------------------
# The network


def test_the_network_has_the_layers_and_indices_of_vgg16_bn():
    """After folding its batch norms, the network is VGG-16's chain: the same 38 layers, names,
    kinds and indices as torchvision's vgg16_bn (convolutions 0, 2, 5, ..., 28; dense 31, 34, 37)."""
    with torch.device("meta"):
        reference = canonical.layers(torchvision.models.vgg16_bn().eval())
    ours = canonical.layers(training.build_network(6))
    assert len(ours) == canonical.VGG16_LAYERS == 38
    assert [(layer.index, layer.name, layer.kind) for layer in ours] == \
           [(layer.index, layer.name, layer.kind) for layer in reference]
    assert [layer.index for layer in ours if layer.kind == "conv"] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert [layer.index for layer in ours if layer.kind == "linear"] == [31, 34, 37]
    assert [layer.index for layer in ours if layer.kind == "maxpool"] == [4, 9, 16, 23, 30]
    assert all("+features." in layer.name for layer in ours if layer.kind == "conv")   # batch norm folded


def test_widths_and_parameter_count():
    """A quarter of VGG-16's widths, a 2x2 pool, dense 512 -> 256 -> 256 -> 6: 1 121 558 parameters,
    counted here from the layer sizes."""
    model = training.build_network(6)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 13
    assert model.avgpool.output_size == (2, 2)
    dense = [(m.in_features, m.out_features) for m in model.classifier if isinstance(m, nn.Linear)]
    assert dense == [(512, 256), (256, 256), (256, 6)]
    widths = [3] + [c.out_channels for c in convs]
    expected = sum(9 * i * o + o + 2 * o for i, o in zip(widths, widths[1:])) + sum(i * o + o for i, o in dense)
    assert training.parameter_count(model) == expected == 1_121_558
    assert not model.training


def random_batch_norm(model, seed, *, biases):
    """Random running statistics and affine parameters in every batch norm, random weights; with
    ``biases=False`` every bias (conv, dense, batch norm's shift) and running mean is zero, so the
    folded network has no bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g, dtype=torch.float64) + 0.5)
                module.weight.copy_(torch.rand(module.weight.shape, generator=g, dtype=torch.float64) + 0.5)
                if biases:
                    module.running_mean.normal_(0, 0.1, generator=g)
                    module.bias.normal_(0, 0.1, generator=g)
                else:
                    module.running_mean.zero_()
                    module.bias.zero_()
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=g, dtype=torch.float64)
                                  if biases else torch.zeros_like(module.bias))
    return model


def test_lrp0_conserves_relevance_layer_by_layer_on_the_folded_network():
    """As on VGG-16 without biases: uniform LRP-0 keeps the logit, layer by layer, to 1e-9, with the
    batch norms folded into the convolutions (their scales random, their shifts zero)."""
    torch.manual_seed(5)
    model = random_batch_norm(training.build_network(6).double(), 6, biases=False)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    explanation = lrp.explain(model, x, 3, composites.uniform("zero", heuristic="vanilla"))
    with torch.no_grad():
        assert torch.allclose(explanation.logits, model(x), rtol=1e-12, atol=0)
    assert_conserved(explanation)


def test_folding_is_exact_lrp0_equals_gradient_x_input_through_the_batch_norms():
    """With every bias and batch-norm statistic random, relevance is not conserved (the biases take
    their share), but uniform LRP-0 with winner-takes-all pooling is still Gradient × Input, which
    autograd computes through the unfolded nn.BatchNorm2d: the folding's oracle."""
    torch.manual_seed(8)
    model = random_batch_norm(training.build_network(6).double(), 9, biases=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    explanation = lrp.explain(model, x, None, composites.uniform("zero", heuristic="vanilla", maxpool="max"))
    with torch.no_grad():
        assert torch.allclose(explanation.logits, model(x), rtol=1e-12, atol=0)
    expected = lrp.gradient_x_input(model, x)
    assert ((explanation.relevance - expected).abs().max() / expected.abs().max()).item() <= 1e-8


# --------------------------------------------------------------------------------------------
# Training


@needs_photos
def test_a_short_training_learns(tmp_path):
    """Two kinds (disc, cross) at 32 px without distractors, 6 144 images: the loss falls and the
    test accuracy is far above chance (0.5) in a few seconds."""
    task = TaskConfig(size=32, classes=("disc", "cross"), distractors=(0, 0))
    config = TrainingConfig(task=task, images=6144, eval_images=200, width=8, hidden=32, lr=3e-3, dropout=0.0)
    result = training.train(config, tmp_path, **QUIET)
    history = result.record["history"]
    assert len(history) == 6 and history[-1]["images"] == 6144
    assert history[-1]["loss"] < history[0]["loss"] - 0.3
    assert result.test_accuracy >= 0.8 and result.validation_accuracy >= 0.8
    assert not result.reused and result.continued_from == 0


@needs_photos
def test_the_same_config_twice_gives_the_same_weights(tiny, tmp_path):
    """On the CPU, with the same thread count: bit for bit (the file's sha256), and the same record
    but for the seconds."""
    folder, first = tiny
    second = training.train(TINY, tmp_path, checkpoint_every=10 ** 6, **QUIET)
    assert second.sha256 == first.sha256
    assert (tmp_path / "weights.pt").read_bytes() == (folder / "weights.pt").read_bytes()
    keep = ("seconds",)
    assert {k: v for k, v in second.record.items() if k not in keep} == \
           {k: v for k, v in first.record.items() if k not in keep}
    assert sorted(files(tmp_path)) == ["training.json", "weights.pt"]


@needs_photos
def test_the_result_and_its_record(tiny):
    """training.json holds the config, the images, both accuracies, the network and the sha256 of
    weights.pt; the checkpoint is gone; load_trained gives the network in eval mode, with the
    recorded test accuracy."""
    folder, result = tiny
    assert sorted(files(folder)) == ["training.json", "weights.pt"]
    record = json.loads((folder / "training.json").read_text())
    assert TrainingConfig.from_dict(record["config"]) == TINY == result.config
    assert record["images"] == result.images == 768 and record["resumed_at"] == []
    assert record["test"] == {"split": "test", "seed": 0, "images": 64, "accuracy": result.test_accuracy}
    assert record["validation"]["split"] == "validation"
    assert record["sha256"] == result.sha256 == models.sha256_file(folder / "weights.pt")
    assert record["network"]["widths"] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert record["network"]["dense"] == [16, 16, 6]
    assert [h["images"] for h in record["history"]] == [768]
    model = training.load_trained(folder)
    assert not model.training and len(canonical.layers(model)) == 38
    assert training.evaluate(model, TINY.task, 64, seed=0) == result.test_accuracy
    info = models.weights_info(model)
    assert (info.arch, info.source, info.sha256) == (training.ARCH, "file", result.sha256)


@needs_photos
def test_an_interrupted_training_continues_to_the_same_weights(tiny, tmp_path, monkeypatch):
    """Ctrl-C before the first checkpoint writes nothing (not even the folder). Ctrl-C at 384 images,
    after the checkpoint at 256: the folder holds the checkpoint and no other file; training again
    continues from 256 and ends with the uninterrupted run's weights."""
    interrupt_at(monkeypatch, 128)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, tmp_path / "new", checkpoint_every=EVERY, progress=False, echo=lines.append)
    assert not (tmp_path / "new").exists()
    assert lines == [f"interrupted before the first checkpoint: this training wrote nothing to {tmp_path / 'new'}"]
    monkeypatch.undo()
    interrupt_at(monkeypatch, 384)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, tmp_path, checkpoint_every=EVERY, **QUIET)
    assert sorted(files(tmp_path)) == ["checkpoint.pt"]
    monkeypatch.undo()
    lines = []
    result = training.train(TINY, tmp_path, checkpoint_every=EVERY, progress=False, echo=lines.append)
    assert result.continued_from == 256 and result.record["resumed_at"] == [256]
    assert lines == [f"{tmp_path}: continuing from the checkpoint at 256 of 768 images"]
    assert result.sha256 == tiny[1].sha256 and result.record["history"] == tiny[1].record["history"]
    assert sorted(files(tmp_path)) == ["training.json", "weights.pt"]


@needs_photos
def test_ctrl_c_while_measuring_or_writing_leaves_the_checkpoint_and_no_result(tmp_path, monkeypatch):
    """Interrupted after the last batch (evaluation) or while the final files are written: no
    weights.pt, no training.json, no temporary file; the checkpoint stays."""
    config = dataclasses.replace(TINY, images=320)
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path, checkpoint_every=EVERY, **QUIET)
    assert sorted(files(tmp_path)) == ["checkpoint.pt"]
    monkeypatch.undo()   # continuing from 256 there is no checkpoint left to write: publish is the final files'
    monkeypatch.setattr(training.Outputs, "publish", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path, checkpoint_every=EVERY, **QUIET)
    assert sorted(files(tmp_path)) == ["checkpoint.pt"]


@needs_photos
def test_a_complete_training_is_reused_without_work(tiny, monkeypatch):
    folder, result = tiny
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setattr(training, "_Stream", None)   # any training would fail
    lines = []
    again = training.train(TINY, folder, progress=False, echo=lines.append)
    assert again.reused and again.sha256 == result.sha256 and again.test_accuracy == result.test_accuracy
    assert "reusing it" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@needs_photos
def test_another_config_is_refused_without_force_and_replaced_with_it(tiny, tmp_path, monkeypatch):
    """A result or checkpoint of another config: refused before anything is written, naming the first
    setting that differs; with force the folder is trained afresh and its files replaced at the end."""
    folder, result = tiny
    other = dataclasses.replace(TINY, seed=1)
    before = files(folder)
    with pytest.raises(ValueError, match=r"training\.json is of another training config \(seed 0 there, 1 here\); "
                                         r"pass --force"):
        training.train(other, folder, **QUIET)
    with pytest.raises(ValueError, match=r"task\.size 32 there, 64 here"):
        training.train(dataclasses.replace(TINY, task=TaskConfig()), folder, **QUIET)
    assert files(folder) == before

    interrupt_at(monkeypatch, 384)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, tmp_path, checkpoint_every=EVERY, **QUIET)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"checkpoint\.pt is of another training config \(images 768 there, 512 "):
        training.train(dataclasses.replace(TINY, images=512), tmp_path, **QUIET)
    assert sorted(files(tmp_path)) == ["checkpoint.pt"]

    replaced = training.train(other, tmp_path, force=True, checkpoint_every=EVERY, **QUIET)
    assert replaced.config.seed == 1 and replaced.continued_from == 0 and replaced.sha256 != result.sha256
    assert sorted(files(tmp_path)) == ["training.json", "weights.pt"]
    assert training.train(other, tmp_path, **QUIET).reused


@needs_photos
def test_a_forced_training_interrupted_keeps_the_old_result_until_it_is_done(tiny, tmp_path, monkeypatch):
    """--force into a folder with a complete result, Ctrl-C: the old result stays, beside the new
    config's checkpoint; the old config is still reused, the new one continues (no --force needed: it
    was given when that training began) and replaces the old result when complete."""
    folder, result = tiny
    for name in ("training.json", "weights.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    other = dataclasses.replace(TINY, seed=1)
    interrupt_at(monkeypatch, 384)
    with pytest.raises(KeyboardInterrupt):
        training.train(other, tmp_path, force=True, checkpoint_every=EVERY, **QUIET)
    monkeypatch.undo()
    assert sorted(files(tmp_path)) == ["checkpoint.pt", "training.json", "weights.pt"]
    assert training.load_trained(tmp_path) is not None
    assert training.train(TINY, tmp_path, **QUIET).sha256 == result.sha256
    assert "checkpoint.pt" in files(tmp_path)            # another config's checkpoint is not removed
    continued = training.train(other, tmp_path, checkpoint_every=EVERY, **QUIET)
    assert continued.continued_from == 256 and continued.config.seed == 1
    assert sorted(files(tmp_path)) == ["training.json", "weights.pt"]


@needs_photos
def test_load_trained_refuses_a_changed_weights_file(tiny, tmp_path):
    folder, _ = tiny
    for name in ("training.json", "weights.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    weights = tmp_path / "weights.pt"
    content = bytearray(weights.read_bytes())
    content[len(content) // 2] ^= 1
    weights.write_bytes(bytes(content))
    for call in (lambda: training.load_trained(tmp_path), lambda: training.train(TINY, tmp_path, **QUIET)):
        with pytest.raises(ValueError, match=r"weights\.pt has sha256 .* but training\.json records .*: the file "
                                             r"was changed or damaged") as error:
            call()
        assert "\n" not in str(error.value)
    (tmp_path / "training.json").unlink()
    with pytest.raises(FileNotFoundError, match="no trained network in .*: training.json is missing"):
        training.load_trained(tmp_path)


# --------------------------------------------------------------------------------------------
# Errors and profiles


@pytest.mark.parametrize("make, error, match", [
    (lambda: TrainingConfig(lr=0), ValueError, r"^lr must be > 0, got 0$"),
    (lambda: TrainingConfig(lr=float("nan")), TypeError, r"^lr must be a finite number, got nan$"),
    (lambda: TrainingConfig(batch_size=0), ValueError, r"^batch_size must be an int >= 1, got 0$"),
    (lambda: TrainingConfig(images=0), ValueError, r"^images must be an int >= 1, got 0$"),
    (lambda: TrainingConfig(images=1.5), TypeError, r"^images must be an int, got 1.5$"),
    (lambda: TrainingConfig(eval_images=0), ValueError, r"^eval_images must be an int >= 1, got 0$"),
    (lambda: TrainingConfig(weight_decay=-1), ValueError, r"^weight_decay must be >= 0, got -1$"),
    (lambda: TrainingConfig(schedule="linear"), ValueError,
     r"^unknown schedule 'linear'; choose one of 'cosine', 'constant'$"),
    (lambda: TrainingConfig(dropout=1), ValueError, r"^dropout must be a probability 0 <= dropout < 1, got 1$"),
    (lambda: TrainingConfig(seed=-1), ValueError, r"^seed must be an int >= 0, got -1$"),
    (lambda: TrainingConfig(seed=2 ** 64), ValueError, r"^seed must be below 2\*\*64"),
    (lambda: TrainingConfig(width=0), ValueError, r"^width must be an int >= 1, got 0$"),
    (lambda: TrainingConfig(task="quick"), TypeError, r"^task must be a synthetic.TaskConfig, got str$"),
    (lambda: TrainingConfig(task=TaskConfig(classes=("disc",))), ValueError, r"^classes must name at least 2 kinds"),
    (lambda: TrainingConfig.from_dict({"task": {}, "epochs": 3}), ValueError, r"^unknown training config key 'epochs'"),
    (lambda: training.build_network(1), ValueError, r"^classes must be an int >= 2"),
    (lambda: training.train("quick", "out"), TypeError, r"^config must be a training.TrainingConfig, got str$"),
    (lambda: training.train(TINY, "out", checkpoint_every=0), ValueError, r"^checkpoint_every must be an int >= 1"),
    (lambda: training.evaluate(training.build_network(6).train(), TINY.task, 4, seed=0), ValueError,
     r"^model is in training mode"),
    (lambda: training.evaluate(training.build_network(6), TINY.task, 0, seed=0), ValueError, r"^n must be an int >= 1"),
])
def test_bad_inputs_are_refused_in_one_line(make, error, match):
    with pytest.raises(error, match=match) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_out_dir_is_checked_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file is a file, not a folder"):
        training.train(TINY, tmp_path / "file", **QUIET)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "weights.pt").write_bytes(b"mine")
    with pytest.raises(ValueError, match=r"weights\.pt exists already \(without training\.json: not a complete "
                                         r"training\); pass --force"):
        training.train(TINY, tmp_path / "out", **QUIET)
    (tmp_path / "out" / "checkpoint.pt").write_bytes(b"damaged")
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.pt cannot be read"):
        training.train(TINY, tmp_path / "out", **QUIET)
    assert files(tmp_path / "out") == {"checkpoint.pt": b"damaged", "weights.pt": b"mine"}


def test_profiles():
    """smoke < quick < full, each a valid config of the default task; the default config is quick."""
    assert tuple(training.PROFILES) == ("smoke", "quick", "full")
    sizes = [config.images for config in training.PROFILES.values()]
    assert sizes == sorted(sizes) and sizes[0] >= 32 * 100
    assert training.PROFILES["quick"] == TrainingConfig()
    assert all(c.task == synthetic.TaskConfig() and c.seed == 0 for c in training.PROFILES.values())
    assert TrainingConfig.from_dict(TrainingConfig().to_dict()) == TrainingConfig()
