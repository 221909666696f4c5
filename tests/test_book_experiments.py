"""The book's experiment step (lrpkit/book/experiments.py): run an experiment config when its inputs
changed, reuse its results otherwise, and re-execute the notebooks that read it.

A tiny book whose one figure reads one experiment: a 2 x 2 LRP-Tutorial grid of the small
VGG-16-shaped network of tests/experiment_models.py on two synthetic images in a validation folder.
Runs are counted by wrapping :func:`lrpkit.experiment.runner.run`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lrpkit import book, provenance
from lrpkit.book import experiments as book_experiments
from lrpkit.experiment import runner
from test_book_pipeline import CHAPTER, make_notebook
from test_experiment import config_dict, write_val

REPO = Path(__file__).resolve().parents[1]
PARAMS = ('device = "cpu"\nweights = "auto"\nprofile = "quick"\nseed = 0\n'
          'results = "book/_generated/_experiments/grid/quick"')
CELLS = (
    "from myst_nb import glue\nimport pandas as pd\nfrom lrpkit.book import provenance",
    """
    table = pd.read_parquet(results + "/results.parquet")
    glue("line", len(table))
    glue("slope", float(table["auc"].mean()))
    """,
    """
    p = provenance(dict(device=device, weights=weights, profile=profile, seed=seed, results=results))
    glue("provenance", p)
    glue("banner", p.banner())
    """,
)


@pytest.fixture
def experiment_book(tmp_path, monkeypatch):
    """A one-chapter book with one figure reading one experiment, and a counter of experiment runs."""
    root = tmp_path / "book-root"
    root.mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO / "book" / "_ext", root / "book" / "_ext")
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/chap\n")
    (root / "book" / "index.md").write_text("# Tiny book\n")
    (root / "book" / "chap.md").write_text(CHAPTER.format(fid="fig-a", key="line"))
    make_notebook(root / "notebooks" / "a.ipynb", PARAMS, *CELLS)
    val = write_val(root / "experiments" / "val", n=2, other=0)
    config = config_dict(Path("val"), pf={"patch_size": 8, "batch_size": 4, "orders": ["morf", "random"]})
    config["images"]["labels"] = "val/labels.txt"
    (root / "experiments" / "grid.yaml").write_text(yaml.safe_dump(config))
    (root / "notebooks" / "figures.yml").write_text(textwrap.dedent("""\
        experiments:
          grid:
            title: a tiny grid
            config: experiments/grid.yaml
            parameters:
              smoke: {"pf.orders": [morf]}
        figures:
          fig-a:
            title: A table
            notebook: a.ipynb
            chapter: book/chap
            experiment: grid
        """))
    runs = []
    real_run = runner.run

    def counting_run(*args, **kwargs):
        runs.append(args[1])
        kwargs["workers"] = 0
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runner, "run", counting_run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root, val, runs
    torch.set_num_threads(threads)


def build(root: Path, **kw):
    return book.build(root, profile="quick", device="cpu", weights="auto", progress=False, html=False, **kw)


def test_experiment_runs_once_then_is_reused_and_reruns_when_its_inputs_change(experiment_book):
    root, val, runs = experiment_book
    results = root / "book" / "_generated" / "_experiments" / "grid" / "quick"

    summary = build(root)                                      # first build: the experiment runs
    assert len(runs) == 1 and summary["executed"] == ["fig-a"]
    assert [e["status"] for e in summary["experiments"]] == ["ran"]
    assert (results / "results.parquet").is_file() and not list(results.parent.glob(".*partial"))
    record = json.loads((results / book_experiments.RECORD_FILE).read_text())
    assert record["fingerprint"] == summary["experiments"][0]["fingerprint"]
    glued = book.glue_keys(root / "book" / "_generated" / "chap" / "fig-a.ipynb")
    assert glued["line"]["data"]["text/plain"] == "16"          # 2 images x 4 settings x 2 orders

    summary = build(root)                                      # nothing changed: reused, no notebook
    assert len(runs) == 1 and summary["executed"] == []
    assert [e["status"] for e in summary["experiments"]] == ["reused"]

    config = root / "experiments" / "grid.yaml"                # the config changed: rerun, re-execute
    data = yaml.safe_load(config.read_text())
    data["grid"]["gamma"] = [0.0, 0.5]
    config.write_text(yaml.safe_dump(data))
    summary = build(root)
    assert len(runs) == 2 and summary["executed"] == ["fig-a"]
    assert yaml.safe_load((results / "config.yaml").read_text())["grid"]["gamma"] == [0.0, 0.5]

    image = sorted(val.glob("*.png"))[0]                       # an image's checksum changed: rerun
    image.write_bytes(image.read_bytes() + b"\0")
    summary = build(root)
    assert len(runs) == 3 and summary["executed"] == ["fig-a"]

    summary = build(root)                                      # and reused again
    assert len(runs) == 3 and summary["executed"] == []

    summary = book.build(root, profile="smoke", device="cpu", weights="auto", progress=False, html=False)
    assert len(runs) == 4                                      # another profile: its own results
    assert (root / "book" / "_generated" / "_experiments" / "grid" / "smoke" / "results.parquet").is_file()
    assert (results / "results.parquet").is_file()
    summary = build(root, seed=1)                              # the seed is part of the inputs
    assert len(runs) == 5


def test_figure_cache_key_includes_the_experiments_fingerprint(experiment_book):
    root, _, _ = experiment_book
    (figure,) = book.load_registry(root)
    assert figure.experiment == ["grid"]
    params = figure.resolved_parameters("quick", {"device": "cpu", "weights": "auto", "seed": 0})
    assert params["results"] == "book/_generated/_experiments/grid/quick"
    inputs = book.figure_inputs(root, figure, params)
    experiments = book.load_experiments(root)
    config = book_experiments.resolve_config(root, experiments["grid"], "quick", params)
    expected = book.fingerprint(book_experiments.experiment_inputs(root, experiments["grid"], config))
    assert inputs["experiments"] == {"grid": expected}
    smoke = figure.resolved_parameters("smoke", {"device": "cpu", "weights": "auto", "seed": 0})
    assert book.figure_inputs(root, figure, smoke)["experiments"]["grid"] != expected


def test_interrupted_experiment_is_continued_by_the_next_build(experiment_book, monkeypatch):
    """A build stopped after the first image keeps the partial folder; the next one runs only the rest."""
    root, _, runs = experiment_book
    from lrpkit.experiment import store

    real_write = store.ResultsDir.write_unit
    calls = []

    def write_then_stop(self, unit_id, table):
        path = real_write(self, unit_id, table)
        calls.append(unit_id)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(store.ResultsDir, "write_unit", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(root)
    (partial,) = (root / "book" / "_generated" / "_experiments" / "grid").glob(".quick.*.partial")
    assert len(list((partial / "units").glob("*.parquet"))) == 1
    assert not (root / "book" / "_generated" / "_experiments" / "grid" / "quick").exists()
    summary = build(root)
    assert calls == ["0000", "0001"] and len(runs) == 2 and summary["executed"] == ["fig-a"]
    assert not partial.exists()


def test_ctrl_c_ends_the_build_command_with_one_line(experiment_book, monkeypatch, capsys):
    """Ctrl-C during an experiment: exit 130, one line on stderr (no traceback), the partial folder kept."""
    root, _, _ = experiment_book
    from lrpkit.experiment import store

    def interrupted(self, unit_id, table):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.ResultsDir, "write_unit", interrupted)
    code = book.main(["build", "--root", str(root), "--profile", "quick", "--device", "cpu", "--no-html"])
    lines = [l for l in capsys.readouterr().err.strip().splitlines() if "Traceback" in l or "interrupted" in l]
    assert code == 130 and lines == ["book build interrupted: finished notebooks and experiment results are kept; "
                                     "the next build continues an interrupted experiment"]
    assert list((root / "book" / "_generated" / "_experiments" / "grid").glob(".quick.*.partial"))


def test_full_profile_without_the_validation_folder_says_what_is_missing(experiment_book, monkeypatch, capsys):
    root, _, runs = experiment_book
    registry = root / "notebooks" / "figures.yml"
    registry.write_text(registry.read_text().replace(
        'smoke: {"pf.orders": [morf]}',
        'smoke: {"pf.orders": [morf]}\n      full: {images: {imagenet_val: $IMAGENET_VAL, class: axolotl}}'))
    monkeypatch.delenv("IMAGENET_VAL", raising=False)
    code = book.main(["build", "--root", str(root), "--profile", "full", "--device", "cpu", "--no-html"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and runs == []
    (line,) = [l for l in err if l.startswith("book build failed")]
    assert "profile 'full' needs the ILSVRC-2012 validation images: set IMAGENET_VAL to their folder" in line
    assert "experiment grid" in line and "--profile quick" in line
    assert not (root / "book" / "_generated" / "chap").exists()     # no notebook ran


def cluster_run(root: Path, folder: Path, runs: list, **changes) -> Path:
    """The book's quick experiment run elsewhere as a cluster would: two shards, merged, and its
    config as that machine wrote it (another device and validation folder). ``changes`` edit the
    config before the run."""
    from lrpkit.experiment import store

    common = {"device": "cpu", "weights": "auto", "seed": 0}
    config = book_experiments.resolve_config(root, book.load_experiments(root)["grid"], "quick", common)
    if changes:
        config = dataclasses.replace(config, data={**config.data, **changes})
    for shard in ("1/2", "2/2"):
        runner.run(config, folder, shard=shard, estimate=False, progress=False, echo=lambda line: None)
    store.merge([folder], progress=False)
    runs.clear()
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    saved["device"] = "cuda:0"
    saved["images"] = {**saved["images"], "imagenet_val": "/cluster/imagenet/val", "labels": "/cluster/labels.txt"}
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    return folder


def test_results_made_elsewhere_are_checked_taken_and_then_reused(experiment_book, tmp_path):
    root, _, runs = experiment_book
    results = root / "book" / "_generated" / "_experiments" / "grid" / "quick"
    elsewhere = cluster_run(root, tmp_path / "cluster" / "grid", runs)
    before = {p.relative_to(elsewhere): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}

    summary = build(root)                                      # the build's own run first
    assert len(runs) == 1 and summary["executed"] == ["fig-a"]
    own = pd.read_parquet(results / "results.parquet")
    assert provenance.experiment_record(results)["made"] == "by this build"

    summary = build(root, results={"grid": elsewhere})          # taken, not run; the figure re-executes
    assert len(runs) == 1 and [e["status"] for e in summary["experiments"]] == ["imported"]
    assert summary["executed"] == ["fig-a"]
    record = json.loads((results / book_experiments.RECORD_FILE).read_text())
    assert record["imported"]["from"] == str(elsewhere.resolve())
    assert record["fingerprint"] == summary["experiments"][0]["fingerprint"] != record["figure_key"]
    assert yaml.safe_load((results / "config.yaml").read_text())["device"] == "cpu"     # this machine's
    taken = pd.read_parquet(results / "results.parquet")
    assert taken["auc"].tolist() == own["auc"].tolist()        # the same experiment, the same numbers
    glued = book.glue_keys(root / "book" / "_generated" / "chap" / "fig-a.ipynb")
    assert glued["line"]["data"]["text/plain"] == "16"
    after = {p.relative_to(elsewhere): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    assert after == before                                     # the directory given is only read

    # a figure drawn from them says where they were made: imported, on the devices its units record
    made = provenance.experiment_record(results)
    assert made["made"] == "imported" and made["from"] == "grid" and made["devices"] == ["cpu"]
    assert made["results_sha256"] == record["imported"]["results_sha256"] and made["rows"] == len(taken)
    shown = provenance.provenance(dict(device="cpu", weights="auto", profile="quick", seed=0),
                                  experiments={"grid": results})._repr_html_()
    assert f"grid: imported from grid (table sha256 {made['results_sha256'][:12]}…), made on cpu" in shown

    for again in ({}, {"results": {"grid": elsewhere}}):       # later builds reuse the taken results
        summary = build(root, **again)
        assert len(runs) == 1 and summary["executed"] == []
        assert [e["status"] for e in summary["experiments"]] == ["reused"]


def test_results_made_elsewhere_that_differ_are_refused_in_one_line(experiment_book, tmp_path, capsys):
    root, _, runs = experiment_book
    other_seed = cluster_run(root, tmp_path / "seed", runs, seed=5)
    unmerged = tmp_path / "unmerged"
    shutil.copytree(other_seed, unmerged)
    (unmerged / "results.parquet").unlink()
    cases = {
        f"grid={other_seed}": r"made with other config than this build's experiment 'grid': 'seed' is 5 there but 0 here",
        f"grid={unmerged}": r"no results.parquet yet \(2 of 2 images done\); finish the run, then `lrpkit experiment merge",
        f"grid={tmp_path}": "not an experiment results directory",
        f"gird={other_seed}": r"no figure of this build reads experiment 'gird' \(they read: grid\)",
        "grid": r"use EXPERIMENT=DIR",
    }
    for value, message in cases.items():
        code = book.main(["build", "--root", str(root), "--profile", "quick", "--device", "cpu", "--no-html",
                          "--results", value])
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and line.startswith("book build failed: "), line
        assert re.search(message, line), line
    assert runs == [] and not (root / "book" / "_generated" / "_experiments" / "grid" / "quick").exists()
    assert not (root / "book" / "_generated" / "chap").exists()          # nothing ran, nothing written


#: A figure's cache key as ``book.figure_inputs`` computes it on its own (argv[1]: the book root).
FIGURE_KEY = """\
import sys
from pathlib import Path
from lrpkit import book
root = Path(sys.argv[1])
(figure,) = book.load_registry(root)
params = figure.resolved_parameters("quick", {"device": "cpu", "weights": "auto", "seed": 0})
print(book.fingerprint(book.figure_inputs(root, figure, params)))
"""


def figure_key_in_a_fresh_process(root: Path) -> str:
    """The figure's cache key computed by a process that never ran the build's experiment step."""
    here = str(Path(book.__file__).resolve().parents[2])          # the lrpkit this process imported
    tests = str(Path(__file__).resolve().parent)                  # the config's model.factory module
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, tests, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", FIGURE_KEY, str(root)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def test_figure_key_is_the_same_whether_or_not_the_experiment_step_ran_in_this_process(experiment_book, tmp_path):
    """A figure's cache key follows from the registry and what is on disk, never from what ran before in
    the process: the key the build used, the key this process computes after the build (whose experiment
    step ran here) and the key a fresh process computes are one, for results the build made and for
    results it imported (whose key also covers the imported table's checksum)."""
    root, _, runs = experiment_book
    (figure,) = book.load_registry(root)
    params = figure.resolved_parameters("quick", {"device": "cpu", "weights": "auto", "seed": 0})
    elsewhere = cluster_run(root, tmp_path / "cluster" / "grid", runs)
    keys = []
    for status, given in (("ran", {}), ("imported", {"results": {"grid": elsewhere}})):
        summary = build(root, **given)
        assert [e["status"] for e in summary["experiments"]] == [status] and summary["executed"] == ["fig-a"]
        used = summary["figures"][0]["fingerprint"]                          # the key the build gave the figure
        assert book.fingerprint(book.figure_inputs(root, figure, params)) == used, status   # after the step here
        assert figure_key_in_a_fresh_process(root) == used, status           # where the step never ran
        keys.append(used)
    assert keys[0] != keys[1]                                                # importing re-keys the figure


def test_figure_inputs_take_the_keys_prepare_returns(experiment_book):
    """The build passes the experiment step's keys to the figure step; without them, figure_inputs
    computes the same keys from disk, and keys that lack an experiment the figure reads are an error."""
    root, _, runs = experiment_book
    (figure,) = book.load_registry(root)
    params = figure.resolved_parameters("quick", {"device": "cpu", "weights": "auto", "seed": 0})
    (made,) = book_experiments.prepare(root, ["grid", "grid"], book.load_experiments(root), "quick", params,
                                       progress=False, echo=lambda line: None)
    assert len(runs) == 1 and made.status == "ran" and made.figure_key == made.fingerprint
    on_disk = book.figure_inputs(root, figure, params)
    assert on_disk["experiments"] == {"grid": made.figure_key}
    assert book.figure_inputs(root, figure, params, experiment_keys={"grid": made.figure_key}) == on_disk
    other = book.figure_inputs(root, figure, params, experiment_keys={"grid": "other", "unread": "x"})
    assert other["experiments"] == {"grid": "other"} and book.fingerprint(other) != book.fingerprint(on_disk)
    with pytest.raises(ValueError, match=r"figure 'fig-a' reads experiment 'grid', which experiment_keys lacks "
                                         r"\(it has: unread\)"):
        book.figure_inputs(root, figure, params, experiment_keys={"unread": "x"})


@pytest.mark.parametrize("edit, message", [
    ("config: experiments/grid.yaml", "config: experiments/nope.yaml", ),
    ("experiment: grid", "experiment: gird"),
    ("smoke: {\"pf.orders\": [morf]}", "smoke: {seed: 3}"),
    ("title: a tiny grid", "title: a tiny grid\n    runs: 3"),
])
def test_registry_errors_of_experiments_name_the_problem(experiment_book, edit, message):
    root, _, _ = experiment_book
    registry = root / "notebooks" / "figures.yml"
    registry.write_text(registry.read_text().replace(edit, message))
    expected = {"config: experiments/nope.yaml": "config file .*nope.yaml not found",
                "experiment: gird": "experiment 'gird' is not in the registry's 'experiments:' \\(known: grid\\)",
                "smoke: {seed: 3}": r"sets \['seed'\]; these come from the build command",
                "title: a tiny grid\n    runs: 3": r"unknown field\(s\) \['runs'\]"}[message]
    with pytest.raises((ValueError, FileNotFoundError), match=expected):
        book.load_registry(root)
