"""The lrpkit command line: every bad input gives one line on stderr and a non-zero exit status;
`lrpkit data fetch` then `lrpkit explain` works as the README shows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lrpkit
from lrpkit import cli, composites, data, lrp, models, plotting
from test_data import BAD_NAMES, CASTLE, MIRROR, bad_image_files, needs_mirror

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LRPKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LRPKIT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("LRPKIT_OFFLINE", raising=False)
    monkeypatch.delenv("LRPKIT_DEBUG", raising=False)


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------------------
# help and usage


@pytest.mark.parametrize("argv", [[], ["explain"], ["pf"], ["data"], ["data", "fetch"], ["data", "list"],
                                  ["data", "path"], ["weights"]])
def test_every_command_has_help(capsys, argv):
    status, out, err = run(capsys, *argv, "--help")
    assert status == 0 and out.startswith("usage: lrpkit") and not err


@pytest.mark.parametrize("argv, words", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["explain"], "give at least one IMAGE"),
    (["explain", "x.jpg", "--gamma", "-1"], "expected a number >= 0"),
    (["explain", "x.jpg", "--composite", "lrp"], "invalid choice: 'lrp'"),
    (["data", "fetch", "--mirrror", "x"], "unrecognized arguments"),
    (["pf"], "give at least one IMAGE"),
    (["pf", "x.jpg", "--order", "best"], "invalid choice: 'best'"),
    (["pf", "x.jpg", "--mode", "blur"], "invalid choice: 'blur'"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, words):
    status, out, err = run(capsys, *argv)
    assert status == 2 and not out
    assert words in one_error_line(err)


# --------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_image_exits_1_with_one_line(capsys, tmp_path, name):
    path, _, words = bad_image_files(tmp_path / "bad")[name]
    status, out, err = run(capsys, "explain", path, "--weights", "random", "--out", tmp_path / "out")
    line = one_error_line(err)
    assert status == 1 and not out
    assert line.startswith("lrpkit: error: ") and words in line and str(path) in line
    assert not (tmp_path / "out").exists()          # nothing written, no model built


@needs_mirror
@pytest.mark.parametrize("target, words", [("1000", "target 1000 out of range"),
                                           ("-3", "target -3 out of range"),
                                           ("castel", "unknown ImageNet class name 'castel'")])
def test_bad_target_exits_1(capsys, tmp_path, target, words):
    status, out, err = run(capsys, "explain", CASTLE, "--weights", "random", f"--target={target}",
                           "--out", tmp_path / "out")
    assert status == 1 and words in one_error_line(err)


def test_unknown_image_set_exits_1(capsys, tmp_path):
    for argv in (["data", "fetch", "castel"], ["data", "path", "castel"],
                 ["explain", "--set", "castel", "--out", tmp_path]):
        status, out, err = run(capsys, *argv)
        line = one_error_line(err)
        assert status == 1 and "unknown image set 'castel'" in line and "random10" in line


@needs_mirror
def test_checksum_mismatch_exits_1_and_keeps_nothing(capsys, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "castle.jpg").write_bytes(CASTLE.read_bytes()[:-10] + b"0123456789")
    status, out, err = run(capsys, "data", "fetch", "castle", "--mirror", mirror)
    assert status == 1 and "checksum mismatch for castle.jpg" in one_error_line(err)
    assert not (tmp_path / "cache" / "castle.jpg").exists()


@needs_mirror
def test_offline_imagenet_weights_exit_1_naming_the_file(capsys, tmp_path):
    status, out, err = run(capsys, "explain", CASTLE, "--weights", "imagenet", "--offline",
                           "--out", tmp_path / "out")
    line = one_error_line(err)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert status == 1 and "vgg16-397923af.pth" in line and str(hub) in line


def test_bad_weights_file_exits_1(capsys, tmp_path):
    Image.new("RGB", (224, 224)).save(tmp_path / "black.png")
    (tmp_path / "w.pth").write_text("not a state dict")
    status, out, err = run(capsys, "explain", tmp_path / "black.png", "--weights", tmp_path / "w.pth",
                           "--out", tmp_path / "out")
    assert status == 1 and "cannot read weights file" in one_error_line(err)


def test_console_entry_point_in_a_subprocess(tmp_path):
    """The real process: exit status, one stderr line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LRPKIT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "lrpkit.cli", "explain", str(tmp_path / "nope.jpg")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"lrpkit: error: image file not found: {tmp_path / 'nope.jpg'}\n"


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out == f"lrpkit {lrpkit.__version__}\n"


# --------------------------------------------------------------------------------------------
# data and weights commands


@needs_mirror
def test_data_fetch_list_and_path(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LRPKIT_DATA_MIRROR", str(MIRROR))      # as the Makefile exports it
    status, out, err = run(capsys, "data", "fetch", "castle", "alp")
    assert status == 0 and out == f"2 images verified (sha256) in {tmp_path / 'cache'}\n"
    status, out, _ = run(capsys, "data", "path", "castle", "--no-fetch")
    assert status == 0 and out == f"{tmp_path / 'cache' / 'castle.jpg'}\n"
    status, out, _ = run(capsys, "data", "list")
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert status == 0 and names[:6] == ["castle", "castle2", "axolotl", "dalmatian", "alp", "random10"]
    monkeypatch.delenv("LRPKIT_DATA_MIRROR")
    status, _, err = run(capsys, "data", "path", "axolotl", "--no-fetch")
    assert status == 1 and "run `lrpkit data fetch axolotl`" in one_error_line(err)


def test_weights_command_says_where_the_file_goes(capsys, tmp_path):
    status, out, _ = run(capsys, "weights")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert status == 0 and f"{hub / 'vgg16-397923af.pth'} missing" in out


# --------------------------------------------------------------------------------------------
# explain, end to end


def _odd_formats(folder: Path) -> list[Path]:
    """The castle as grayscale, RGBA, palette, CMYK and 16-bit grayscale files."""
    folder.mkdir()
    castle = Image.open(CASTLE).convert("RGB")
    rgba = castle.convert("RGBA")
    rgba.putalpha(200)
    files = {"gray.png": castle.convert("L"), "rgba.png": rgba,
             "palette.png": castle.convert("P", palette=Image.ADAPTIVE, colors=64),
             "cmyk.jpg": castle.convert("CMYK"),
             "gray16.png": Image.fromarray((np.asarray(castle.convert("L")).astype(np.uint16) * 257))}
    for name, image in files.items():
        image.save(folder / name)
    return [folder / name for name in files]


@needs_mirror
def test_fetch_then_explain_the_castle(capsys, tmp_path, monkeypatch):
    """README flow: `lrpkit data fetch`, then `lrpkit explain <castle> ...` (here with the odd
    formats of the castle too). Offline: "auto" falls back to seeded random weights, loudly."""
    monkeypatch.setenv("LRPKIT_DATA_MIRROR", str(MIRROR))
    assert run(capsys, "data", "fetch", "castle")[0] == 0
    castle = data.image_set("castle", fetch_missing=False)[0].path
    odd = _odd_formats(tmp_path / "odd")
    out_dir = tmp_path / "heatmaps"
    status, out, err = run(capsys, "explain", castle, *odd, "--composite", "tutorial",
                           "--gamma", ".1", "--epsilon", ".5", "--offline", "--save-relevance",
                           "--out", out_dir)
    assert status == 0
    warning = one_error_line(err)
    assert warning.startswith("lrpkit: warning: PRETRAINED WEIGHTS UNAVAILABLE - using RANDOM vgg16")
    lines = out.splitlines()
    assert lines[0].startswith("model: vgg16 with RANDOM weights (torch seed 0")
    assert len(lines) == 1 + 1 + len(odd)
    for path, line in zip([castle, *odd], lines[1:]):
        png = out_dir / f"{path.stem}.png"
        assert line.startswith(f"{path}: predicted ") and "target " in line and line.endswith(str(png))
        heatmap = np.asarray(Image.open(png))
        assert heatmap.shape == (224, 224, 3) and heatmap.dtype == np.uint8
        np.testing.assert_array_equal(heatmap, plotting.heatmap_rgb(np.load(out_dir / f"{path.stem}.npy")))
    # the castle's relevance is the library's, with the hyperparameters given on the command line
    model = models.vgg16(weights="random", seed=0)
    x = data.load_image(castle)
    with torch.no_grad():
        logits = model(x)[0]
    predicted = int(logits.argmax())
    expected = lrp.relevance(model, x, target=predicted,
                             composite=composites.tutorial(gamma=0.1, epsilon=0.5))
    np.testing.assert_allclose(np.load(out_dir / "castle.npy"), expected[0].numpy(), rtol=1e-5, atol=1e-7)
    logit = float(logits[predicted])
    name = models.class_name(predicted)
    assert f"predicted {predicted} {name!r} (logit {logit:.4g}); target {predicted} " in lines[1]
    # a target out of range, through the library (the command line checks it above)
    for bad in (1000, -1):
        with pytest.raises(ValueError, match=f"target {bad} is out of range: the model has 1000 classes"):
            lrp.relevance(model, x, target=bad)


@needs_mirror
@pytest.mark.parametrize("argv, words", [
    (["--schedule", "1,x"], "--schedule must be thesis, log, linear or comma-separated patch counts"),
    (["--schedule", "5,3"], "strictly increasing"),
    (["--patch-size", "0"], "patch_size"),
    (["--patch-size", "300"], "patch_size"),
])
def test_pf_bad_settings_exit_1(capsys, tmp_path, argv, words):
    status, out, err = run(capsys, "pf", CASTLE, "--weights", "random", "--offline", "--mode", "gray",
                           *argv, "--out", tmp_path / "out")
    assert status == 1 and words in one_error_line(err.split("\n", 1)[-1] if "warning" in err else err)


@needs_mirror
def test_pf_on_the_castle_writes_the_librarys_curve(capsys, tmp_path):
    """`lrpkit pf` writes the scores that lrpkit.pf computes for the library's own heatmap."""
    import csv

    status, out, err = run(capsys, "pf", CASTLE, "--weights", "random", "--offline", "--mode", "gray",
                           "--order", "lrf", "--schedule", "1,16,196", "--out", tmp_path)
    assert status == 0, err
    with open(tmp_path / "pf-scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [int(r["flips"]) for r in rows] == [0, 1, 15, 180, 784]
    from lrpkit import pf
    model = models.vgg16(weights="random", seed=0)
    x = data.load_image(CASTLE)
    e = lrp.explain(model, x, composite=composites.tutorial())
    expected = pf.pixel_flipping(model, x, e.relevance, e.target, order="lrf", mode="gray", schedule=[1, 16, 196])
    np.testing.assert_allclose([float(r["score_logit"]) for r in rows], expected.scores[0].numpy(), rtol=1e-6)
    assert f"AUC {float(expected.auc[0]):.6g}" in out


# --------------------------------------------------------------------------------------------
# heatmap rendering (what explain writes; the book reuses it)


def test_heatmap_equals_the_thesis_codes_rendering():
    """Pixel for pixel what the thesis's own plotting (lrp-pf-auc's lrp.plot.heatmap: seismic
    darkened to 85 %, limits +-10 * mean(|R|^3)^(1/3)) draws at one pixel per input pixel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    thesis_plot = pytest.importorskip("lrp.plot")
    relevance = np.random.default_rng(0).standard_t(2, size=(3, 224, 224))
    summed = relevance.sum(0)
    thesis_plot.heatmap(summed, width=2.24, height=2.24, dpi=100, show_plot=False)
    figure = plt.gcf()
    figure.canvas.draw()
    theirs = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    plt.close(figure)
    np.testing.assert_array_equal(plotting.heatmap_rgb(torch.from_numpy(relevance)[None]), theirs)


def test_heatmap_colours_signs_and_bad_relevance(tmp_path):
    relevance = np.zeros((2, 64, 64))
    relevance[0, :8, :8] = 5.0           # positive: red
    relevance[1, -8:, -8:] = -5.0        # negative: blue (channels are summed)
    rgb = plotting.heatmap_rgb(relevance)
    red, blue, none = rgb[0, 0].astype(int), rgb[-1, -1].astype(int), rgb[32, 32].astype(int)
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]
    assert abs(none[0] - none[2]) <= 2 and none.min() > 200          # light gray
    assert plotting.heatmap_bound(np.full((4, 4), -2.0)) == pytest.approx(20.0)
    assert len(np.unique(plotting.heatmap_rgb(np.zeros((8, 8))).reshape(-1, 3), axis=0)) == 1
    path = plotting.save_heatmap(torch.from_numpy(relevance), tmp_path / "h" / "map.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    with pytest.raises(ValueError, match="NaN"):
        plotting.heatmap_rgb(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="2 heatmaps"):
        plotting.heatmap_rgb(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="must have shape"):
        plotting.heatmap_rgb(np.zeros(8))
    with pytest.raises(ValueError, match="PNG"):
        plotting.save_heatmap(relevance, tmp_path / "map.jpg")


# --------------------------------------------------------------------------------------------
# input sizes


def test_explain_at_256_and_a_huge_size_refused(capsys, tmp_path):
    """--size 256 runs as torchvision's VGG-16 does (its adaptive pooling); a size beyond the pixel
    limit is one line, not Pillow's decompression-bomb warning."""
    pixels = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    status, out, err = run(capsys, "explain", tmp_path / "photo.png", "--size", "256", "--weights", "random",
                           "--save-relevance", "--out", tmp_path / "out")
    assert status == 0, err
    saved = np.load(tmp_path / "out" / "photo.npy")
    assert saved.shape == (3, 256, 256) and np.asarray(Image.open(tmp_path / "out" / "photo.png")).shape == (256, 256, 3)
    model = models.vgg16(weights="random", seed=0)
    expected = lrp.relevance(model, data.load_image(tmp_path / "photo.png", size=256), composite=composites.tutorial())
    np.testing.assert_allclose(saved, expected[0].numpy(), rtol=1e-5, atol=1e-7)

    status, out, err = run(capsys, "explain", tmp_path / "photo.png", "--size", "20000", "--weights", "random",
                           "--out", tmp_path / "huge")
    line = one_error_line(err)
    assert status == 1 and "size 20000 is too large" in line and "at most 10000" in line and "Warning" not in err
    assert not (tmp_path / "huge").exists()
