"""The book's network step (lrpkit/book/networks.py): a network of the registry's ``networks:`` map is
trained once per inputs, reused afterwards, retrained when an input changes, and handed to the
experiments (``model.trained``) and the notebooks (``network``) that read it.

The training profiles are replaced by a tiny config (32 px, 1/16 of VGG-16's widths: seconds);
trainings are counted by wrapping :func:`lrpkit.training.train`.
"""
from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from lrpkit import data, training
from lrpkit.book import networks as book_networks
from lrpkit.book import registry
from lrpkit.book.experiments import experiment_inputs, resolve_config
from lrpkit.synthetic import TaskConfig
from lrpkit.training import TrainingConfig

pytestmark = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                reason=f"no image mirror ({data.MIRROR_ENV} unset): the task's backgrounds")

TINY = TrainingConfig(task=TaskConfig(size=32), images=256, eval_images=32, width=4, hidden=16)
COMMON = {"device": "cpu", "weights": "auto", "seed": 0}
QUIET = dict(progress=False, echo=lambda line: None)


@pytest.fixture
def network_book(tmp_path, monkeypatch):
    """A registry with one network and one experiment on it; a counter of trainings."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    (root / "experiments").mkdir()
    (root / "experiments" / "gt.yaml").write_text(yaml.safe_dump({
        "composite": {"family": "tutorial"}, "grid": {"gamma": [0.0], "epsilon": [0.25]},
        "images": {"synthetic": "test", "count": 2}, "model": {"trained": "nowhere-yet"},
        "pf": {"patch_size": 8, "mode": "gray"}, "diagnostics": False}))
    (root / "notebooks" / "figures.yml").write_text(textwrap.dedent("""\
        networks:
          shapes:
            title: a tiny network
            profiles: {quick: smoke}
        experiments:
          gt:
            title: a grid on it
            config: experiments/gt.yaml
            network: shapes
        figures: {}
        """))
    monkeypatch.setattr(training, "PROFILES", {name: TINY for name in ("smoke", "quick", "full")})
    calls = []
    real = training.train

    def counted(config, out_dir, **kwargs):
        calls.append((config, Path(out_dir).name))
        return real(config, out_dir, **kwargs)

    monkeypatch.setattr(training, "train", counted)
    return root, calls


def test_a_network_is_trained_once_and_reused_until_an_input_changes(network_book):
    root, calls = network_book
    nets = registry.load_networks(root)
    assert nets["shapes"].training_profile("quick") == "smoke" and nets["shapes"].training_profile("full") == "full"
    first = book_networks.prepare(root, ["shapes"], nets, "quick", COMMON, **QUIET)
    assert [r.status for r in first] == ["trained"] and len(calls) == 1
    assert calls[0][1].startswith(".quick.") and calls[0][1].endswith(".partial")   # trained beside, then moved
    folder = root / first[0].folder
    assert first[0].folder == "book/_generated/_networks/shapes/quick"
    assert training.read_record(folder)["sha256"] == first[0].sha256
    assert not list(folder.parent.glob(".quick.*"))
    key = book_networks.figure_key(root, nets["shapes"], "quick", COMMON)
    assert key == {"fingerprint": first[0].fingerprint, "sha256": first[0].sha256}

    again = book_networks.prepare(root, ["shapes"], nets, "quick", COMMON, **QUIET)
    assert [r.status for r in again] == ["reused"] and len(calls) == 1
    assert again[0].sha256 == first[0].sha256

    other_seed = {**COMMON, "seed": 1}
    assert book_networks.network_fingerprint(nets["shapes"], "quick", other_seed) != first[0].fingerprint
    assert book_networks.figure_key(root, nets["shapes"], "quick", other_seed)["sha256"] is None  # not trained yet
    retrained = book_networks.prepare(root, ["shapes"], nets, "quick", other_seed, **QUIET)
    assert [r.status for r in retrained] == ["trained"] and calls[-1][0].seed == 1
    assert retrained[0].sha256 != first[0].sha256


def test_the_experiment_reads_the_trained_network_and_is_keyed_by_its_weights(network_book):
    root, _ = network_book
    nets = registry.load_networks(root)
    experiment = registry.load_experiments(root)["gt"]
    assert experiment.network == "shapes"
    trained = book_networks.prepare(root, ["shapes"], nets, "quick", COMMON, **QUIET)[0]
    config = resolve_config(root, experiment, "quick", COMMON)
    assert Path(config.data["model"]["trained"]) == (root / trained.folder).resolve()
    inputs = experiment_inputs(root, experiment, config)
    assert inputs["trained_weights_sha256"] == trained.sha256
    assert inputs["config"]["model"]["trained"] == "(local folder)"    # the folder is this machine's


def test_a_figure_reading_a_network_gets_its_folder(network_book, tmp_path):
    root, _ = network_book
    figure = registry.Figure(id="f", title="t", notebook=Path("notebooks/f.ipynb"), chapter="book/c", gpu=False,
                             data=[], parameters={}, network="shapes")
    assert figure.resolved_parameters("quick", COMMON)["network"] == "book/_generated/_networks/shapes/quick"


@pytest.mark.parametrize("entry, words", [
    ("networks: {shapes: {title: t, profiles: {quick: huge}}}\nfigures: {}\n", "trains 'huge', not a training"),
    ("networks: {shapes: {title: t, profiles: {weekly: quick}}}\nfigures: {}\n", "profiles must map book profiles"),
    ("networks: {shapes: {title: t, epochs: 3}}\nfigures: {}\n", "unknown field(s) ['epochs']"),
    ("networks: {}\nexperiments: {gt: {config: experiments/gt.yaml, network: circles}}\nfigures: {}\n",
     "network 'circles' is not in the registry's 'networks:'"),
])
def test_bad_network_entries_are_one_line_errors(network_book, entry, words):
    root, _ = network_book
    (root / "notebooks" / "figures.yml").write_text(entry)
    with pytest.raises(ValueError) as caught:
        registry.load_experiments(root)
    assert words in str(caught.value) and "\n" not in str(caught.value)
