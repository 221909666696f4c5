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
from lrpkit import _outputs, cli, composites, data, imagenet, lrp, models, plotting
from lrpkit.cli import commands
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


def test_pf_help_explains_the_gray_row(capsys):
    status, out, _ = run(capsys, "pf", "--help")
    text = " ".join(out.split())
    assert status == 0 and "(step_kind 'original')" in text and "('perturbed')" in text
    assert "a final step that turns the whole image gray ('gray'; the AUC includes it)" in text


@pytest.mark.parametrize("argv, words", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["explain"], "give at least one IMAGE"),
    (["explain", "x.jpg", "--gamma", "-1"], "expected a number >= 0"),
    (["explain", "x.jpg", "--composite", "lrp"], "invalid choice: 'lrp'"),
    (["data", "fetch", "--mirrror", "x"], "unrecognized arguments"),
    (["pf"], "give at least one IMAGE"),
    (["pf", "x.jpg", "--order", "best"], "invalid choice: 'best'"),
    (["pf", "x.jpg", "--mode", "blur"], "invalid choice: 'blur'"),
    (["pf", "x.jpg", "--schedule", "log", "--steps", "0"], "--steps: expected a whole number >= 1"),
    (["pf", "x.jpg", "--order", "random", "--pf-seed", "-1"], "--pf-seed: expected a whole number >= 0"),
    # options that the chosen composite, rule or schedule would ignore
    (["explain", "x.jpg", "--gammas", ".5,.2,.1,0"], "--gammas applies to --composite decreasing-gamma only, not tutorial"),
    (["explain", "x.jpg", "--composite", "uniform", "--gammas", ".5,.2,.1,0"], "--gammas applies to --composite decreasing-gamma only, not uniform"),
    (["explain", "x.jpg", "--zbox"], "--zbox applies to --composite uniform only, not tutorial"),
    (["explain", "x.jpg", "--rule", "gamma"], "--rule applies to --composite uniform only, not tutorial"),
    (["pf", "x.jpg", "--composite", "decreasing-gamma", "--rule", "zero"], "--rule applies to --composite uniform only, not decreasing-gamma"),
    (["explain", "x.jpg", "--composite", "decreasing-gamma", "--gamma", ".1"], "--gamma does not apply to --composite decreasing-gamma (its γ values are --gammas)"),
    (["explain", "x.jpg", "--composite", "decreasing-gamma", "--epsilon", ".1"], "--epsilon does not apply to --composite decreasing-gamma"),
    (["explain", "x.jpg", "--composite", "uniform", "--gamma", ".1"], "--gamma does not apply to --composite uniform --rule epsilon (only to --rule gamma)"),
    (["explain", "x.jpg", "--composite", "uniform", "--rule", "zero", "--epsilon", "1"], "--epsilon does not apply to --composite uniform --rule zero (only to --rule epsilon)"),
    (["explain", "x.jpg", "--composite", "uniform", "--rule", "gamma", "--epsilon", "1"], "--epsilon does not apply to --composite uniform --rule gamma"),
    (["explain", "x.jpg", "--composite", "uniform", "--rule", "zplus", "--gamma", "1"], "--gamma does not apply to --composite uniform --rule zplus (only to --rule gamma)"),
    (["pf", "x.jpg", "--steps", "5"], "--steps applies to --schedule log or linear only, not thesis"),
    (["pf", "x.jpg", "--schedule", "1,4,9", "--steps", "5"], "--steps applies to --schedule log or linear only, not an explicit list"),
    (["pf", "x.jpg", "--pf-seed", "3"], "--pf-seed applies to --order random, --mode random or --mode road only"),
    (["pf", "x.jpg", "--noise", "0.1"], "--noise applies to --mode road only, not inpainting"),
    (["pf", "x.jpg", "--mode", "road", "--noise", "-1"], "--noise must be a finite number >= 0"),
    (["pf", "x.jpg", "--mode", "road", "--percentages", "10,50", "--schedule", "log"], "give --percentages or --schedule/--steps, not both"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, words):
    status, out, err = run(capsys, *argv)
    assert status == 2 and not out
    assert words in one_error_line(err)


@pytest.mark.parametrize("argv, expected", [
    ([], composites.tutorial()),
    (["--gamma", ".1", "--epsilon", ".5"], composites.tutorial(gamma=0.1, epsilon=0.5)),
    (["--composite", "decreasing-gamma"], composites.decreasing_gamma()),
    (["--composite", "decreasing-gamma", "--gammas", "1,.5,.2,0"], composites.decreasing_gamma((1, 0.5, 0.2, 0))),
    (["--composite", "uniform"], composites.uniform("epsilon")),
    (["--composite", "uniform", "--epsilon", "2"], composites.uniform("epsilon", epsilon=2.0)),
    (["--composite", "uniform", "--rule", "gamma", "--gamma", ".1", "--zbox"], composites.uniform("gamma", gamma=0.1, zbox=True)),
    (["--composite", "uniform", "--rule", "zero", "--maxpool", "max"], composites.uniform("zero", maxpool="max")),
    (["--composite", "uniform", "--rule", "zplus", "--zbox"], composites.uniform("zplus", zbox=True)),
    (["--composite", "uniform", "--rule", "alpha2-beta1", "--zbox"], composites.uniform("alpha2-beta1", zbox=True)),
])
def test_options_that_apply_make_the_composite(argv, expected):
    """The options that are not refused reach the library's composite."""
    args = cli.build_parser().parse_args(["explain", "x.jpg", *argv])
    commands._check_applicable(args)
    assert repr(commands._composite(args)) == repr(expected)


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
    name = imagenet.class_name(predicted)
    assert f"predicted {predicted} {name!r} (logit {logit:.4g}); target {predicted} " in lines[1]
    # a target out of range, through the library (the command line checks it above)
    for bad in (1000, -1):
        with pytest.raises(ValueError, match=f"target {bad} is out of range: the model has 1000 classes"):
            lrp.relevance(model, x, target=bad)


@needs_mirror
@pytest.mark.parametrize("argv, words", [
    (["--schedule", "1,x"], "--schedule must be thesis, log, linear or comma-separated patch counts"),
    (["--schedule", "5,3"], "strictly increasing"),
    (["--patch-size", "0"], "--patch-size must be in [1, 224]"),
    (["--patch-size", "300"], "--patch-size must be in [1, 224]"),
    (["--percentages", "0,50"], "percentages must lie in (0, 100)"),
    (["--percentages", "50,100"], "percentages must lie in (0, 100)"),
    (["--percentages", "50,x"], "--percentages must be comma-separated numbers in (0, 100)"),
])
def test_pf_bad_settings_exit_1(capsys, tmp_path, argv, words):
    status, out, err = run(capsys, "pf", CASTLE, "--weights", "random", "--offline", "--mode", "gray",
                           *argv, "--out", tmp_path / "out")
    assert status == 1 and words in one_error_line(err.split("\n", 1)[-1] if "warning" in err else err)
    assert not (tmp_path / "out").exists()                  # nothing written


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
    assert [r["step_kind"] for r in rows] == ["original", "perturbed", "perturbed", "perturbed", "gray"]
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
# output files: checked before any work, written under temporary names, never clobbered


@pytest.fixture(scope="module")
def _random_vgg16():
    return models.vgg16(weights="random", seed=0)


@pytest.fixture
def loads(monkeypatch, _random_vgg16):
    """``models.vgg`` replaced by one random VGG-16 built once for this module; the list records
    every load, so that a test can assert that a refusal came before the model."""
    calls = []

    def vgg(arch, weights, **kwargs):
        calls.append(weights)
        assert (arch, weights, kwargs.get("seed", 0)) == ("vgg16", "random", 0), "not the model built here"
        return _random_vgg16

    monkeypatch.setattr(models, "vgg", vgg)
    return calls


def photos(folder: Path, *names: str) -> list[Path]:
    """224x224 random-noise PNGs (a different image each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        pixels = np.random.default_rng(k).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def interrupt_call(monkeypatch, module, name: str, at: int | None = None, before=None):
    """Make the ``at``-th call (1-based; None: none) of ``module.name`` raise KeyboardInterrupt,
    as Ctrl-C would; ``before(call)`` runs first on every call."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if before is not None:
            before(len(calls))
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


PF_FAST = ["--weights", "random", "--mode", "gray", "--schedule", "1,16,196"]


def test_explain_never_overwrites_its_input(capsys, tmp_path, monkeypatch, loads):
    """`lrpkit explain photo.png` with the default --out . would write photo.png: refused, even
    with --force, before the model is loaded."""
    photo, = photos(tmp_path, "photo.png")
    before = photo.read_bytes()
    monkeypatch.chdir(tmp_path)
    for force in ([], ["--force"]):
        status, out, err = run(capsys, "explain", "photo.png", "--weights", "random", *force)
        line = one_error_line(err)
        assert status == 1 and not out
        assert "output photo.png is the input image photo.png" in line and "choose another --out" in line
    assert photo.read_bytes() == before and loads == []
    assert files(tmp_path) == {"photo.png": before}


def test_explain_refuses_existing_outputs_unless_forced(capsys, tmp_path, loads):
    castle, = photos(tmp_path / "in", "castle.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "castle.npy").write_bytes(b"earlier result")
    status, out, err = run(capsys, "explain", castle, "--weights", "random", "--save-relevance",
                           "--out", out_dir)
    line = one_error_line(err)
    assert status == 1 and f"{out_dir / 'castle.npy'} exists already; pass --force" in line
    assert loads == [] and files(out_dir) == {"castle.npy": b"earlier result"}
    # --force replaces it; the full WordNet name of a class is a target
    status, out, err = run(capsys, "explain", castle, "--weights", "random", "--save-relevance",
                           "--force", "--target", "tank, army tank", "--out", out_dir)
    assert status == 0, err
    assert "target 847 'tank'" in out
    assert sorted(files(out_dir)) == ["castle.npy", "castle.png"]        # no temporary left
    relevance = np.load(out_dir / "castle.npy")
    np.testing.assert_array_equal(np.asarray(Image.open(out_dir / "castle.png")),
                                  plotting.heatmap_rgb(relevance))
    assert (out_dir / "castle.png").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_names_are_unique():
    paths = [Path("a/castle.jpg"), Path("b/castle.png"), Path("c/castle-2.jpg"), Path("d/castle.jpg")]
    names = commands._output_names(paths)
    assert names == ["castle", "castle-2", "castle-2-2", "castle-3"]


@pytest.mark.parametrize("argv, words", [
    (["--patch-size", "0"], "--patch-size must be in [1, 224] for 224x224 images, got 0"),
    (["--patch-size", "225"], "--patch-size must be in [1, 224]"),
    (["--schedule", "5,3"], "strictly increasing"),
    (["--schedule", "1,785"], "in [1, 784]"),
    (["--schedule", "1,x"], "--schedule must be thesis, log, linear or comma-separated patch counts"),
    (["--target", "castel"], "unknown ImageNet class name 'castel'"),
    (["--composite", "decreasing-gamma", "--gammas", "1,2"], "needs four γ values"),
    (["--arch", "vgg11"], "--composite tutorial does not fit --arch vgg11: layer range 17–30 of composite "
                          "'LRP-Tutorial' is out of range: the model has layers 0–27"),
])
def test_pf_bad_argument_leaves_earlier_scores_untouched(capsys, tmp_path, loads, argv, words):
    """Every argument is checked before pf-scores.csv is touched (and before the model loads)."""
    image, = photos(tmp_path / "in", "photo.png")
    earlier = tmp_path / "out" / "pf-scores.csv"
    earlier.parent.mkdir()
    earlier.write_text("image,order,mode,step\nearlier,morf,gray,0\n")
    status, out, err = run(capsys, "pf", image, *PF_FAST, *argv, "--force", "--out", earlier.parent)
    assert status == 1 and words in one_error_line(err)
    assert files(earlier.parent) == {"pf-scores.csv": b"image,order,mode,step\nearlier,morf,gray,0\n"}
    assert loads == []


def test_interrupted_pf_keeps_earlier_scores_and_no_partial_file(capsys, tmp_path, monkeypatch, loads):
    """Ctrl-C during the second image: exit 130, the earlier pf-scores.csv as it was, no
    temporary file left; without an earlier file, none appears."""
    images = photos(tmp_path / "in", "one.png", "two.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "pf-scores.csv").write_text("earlier")
    seen = []

    def check(call):          # while the run works, its rows are in a temporary file only
        seen.append(sorted(p.name.split(".")[1] for p in out_dir.glob(".pf-scores.csv.*.part")))
        assert (out_dir / "pf-scores.csv").read_text() == "earlier"

    real = lrp.explain
    interrupt_call(monkeypatch, lrp, "explain", at=2, before=check)
    status, out, err = run(capsys, "pf", *images, *PF_FAST, "--force", "--out", out_dir)
    assert status == 130 and err.endswith("lrpkit: interrupted\n")
    assert seen == [["pf-scores"], ["pf-scores"]]
    assert files(out_dir) == {"pf-scores.csv": b"earlier"}
    (out_dir / "pf-scores.csv").unlink()
    monkeypatch.setattr(lrp, "explain", real)
    interrupt_call(monkeypatch, lrp, "explain", at=2)
    status, _, err = run(capsys, "pf", *images, *PF_FAST, "--out", out_dir)
    assert status == 130 and files(out_dir) == {}, err


def test_interrupted_explain_writes_nothing(capsys, tmp_path, monkeypatch, loads):
    """A run's files appear together when it is complete: after Ctrl-C at the second image the
    first image's heatmap is not there either, and no temporary file is left."""
    images = photos(tmp_path / "in", "one.png", "two.png")
    out_dir = tmp_path / "out"

    def check(call):
        if call == 2:
            assert not (out_dir / "one.png").exists()
            assert len(list(out_dir.glob(".one.png.*.part"))) == 1

    interrupt_call(monkeypatch, lrp, "explain", at=2, before=check)
    status, out, err = run(capsys, "explain", *images, "--weights", "random", "--save-relevance",
                           "--out", out_dir)
    assert status == 130 and files(out_dir) == {}


def test_pf_run_finishing_second_does_not_clobber_the_first(capsys, tmp_path, monkeypatch, loads):
    """Two runs into the same --out: the one that finishes second finds pf-scores.csv taken,
    keeps it, writes its own rows to pf-scores.1.csv, says so and exits 1. With --force it
    replaces the file (atomically)."""
    image, = photos(tmp_path / "in", "photo.png")
    out_dir = tmp_path / "out"
    other = b"image,order\nthe other run's rows,morf\n"

    def other_run_finishes(call):
        (out_dir / "pf-scores.csv").write_bytes(other)

    real = lrp.explain
    interrupt_call(monkeypatch, lrp, "explain", before=other_run_finishes)
    status, out, err = run(capsys, "pf", image, *PF_FAST, "--out", out_dir)
    line = one_error_line(err)
    assert status == 1
    assert f"{out_dir / 'pf-scores.csv'} appeared while this run was working" in line
    assert f"this run's file is {out_dir / 'pf-scores.1.csv'}" in line
    assert out.splitlines()[-1] == f"scores -> {out_dir / 'pf-scores.1.csv'}"
    assert sorted(files(out_dir)) == ["pf-scores.1.csv", "pf-scores.csv"]
    assert (out_dir / "pf-scores.csv").read_bytes() == other
    ours = (out_dir / "pf-scores.1.csv").read_text().splitlines()
    assert ours[0] == "image,order,mode,step,step_kind,flips,fraction_flipped,score_logit"
    assert [r.split(",")[4] for r in ours[1:]] == ["original", "perturbed", "perturbed", "perturbed", "gray"]
    # --force: the other file is replaced
    (out_dir / "pf-scores.1.csv").unlink()
    (out_dir / "pf-scores.csv").write_bytes(other)
    monkeypatch.setattr(lrp, "explain", real)
    interrupt_call(monkeypatch, lrp, "explain", before=other_run_finishes)
    status, _, err = run(capsys, "pf", image, *PF_FAST, "--force", "--out", out_dir)
    assert status == 0, err
    assert sorted(files(out_dir)) == ["pf-scores.csv"]
    assert (out_dir / "pf-scores.csv").read_text().splitlines() == ours


def test_publishing_without_hard_links_never_replaces(tmp_path, monkeypatch):
    """Where the file system has no hard links, the final name is reserved by an exclusive
    create: a name that exists is still never replaced."""
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(source), str(target))
    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "scores.csv").write_text("theirs")
    with _outputs.Outputs(force=False) as outputs:
        with outputs.open(tmp_path / "scores.csv", "w") as handle:
            handle.write("ours")
        moved = outputs.publish()
    assert moved == [(tmp_path / "scores.csv", tmp_path / "scores.1.csv")]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"scores.csv": "theirs", "scores.1.csv": "ours"}


def test_out_is_checked_before_the_model(capsys, tmp_path, loads):
    """--out that is a file, or lies under one: one line naming it, before the model loads."""
    image, = photos(tmp_path / "in", "photo.png")
    (tmp_path / "taken").write_text("a file")
    for command in (["explain"], ["pf", "--mode", "gray"]):
        status, out, err = run(capsys, *command, image, "--weights", "random", "--out", tmp_path / "taken")
        assert status == 1 and one_error_line(err) == (
            f"lrpkit: error: --out {tmp_path / 'taken'} is a file, not a folder; choose another --out")
        status, out, err = run(capsys, *command, image, "--weights", "random", "--out", tmp_path / "taken" / "sub")
        assert status == 1 and one_error_line(err) == (
            f"lrpkit: error: --out {tmp_path / 'taken' / 'sub'} cannot be created: {tmp_path / 'taken'} "
            "is a file, not a folder; choose another --out")
    assert loads == [] and (tmp_path / "taken").read_text() == "a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_not_writable(capsys, tmp_path, loads):
    image, = photos(tmp_path / "in", "photo.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    status, _, err = run(capsys, "explain", image, "--out", locked)
    assert status == 1 and "is not writable" in one_error_line(err) and loads == []
    status, _, err = run(capsys, "explain", image, "--out", locked / "new")
    assert status == 1 and f"no permission to write in {locked}" in one_error_line(err)


def test_os_errors_are_one_line_without_errno(capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "mirror").mkdir()
    status, out, err = run(capsys, "data", "fetch", "castle", "--cache", tmp_path / "afile" / "cache",
                           "--mirror", tmp_path / "mirror")
    line = one_error_line(err)
    assert status == 1 and "Errno" not in line
    assert line == f"lrpkit: error: not a directory: {tmp_path / 'afile' / 'cache'}"


# --------------------------------------------------------------------------------------------
# weights whose checksum is not torchvision's


def test_unverified_weights_are_refused_unless_allowed(capsys, tmp_path):
    from test_models import constant_state_dict

    image, = photos(tmp_path / "in", "photo.png")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(constant_state_dict("vgg16"), hub / "vgg16-397923af.pth")
    status, out, err = run(capsys, "weights")
    assert status == 0 and "UNVERIFIED: expected sha256 prefix 397923af" in out
    for weights in ("imagenet", "auto"):
        status, out, err = run(capsys, "explain", image, "--weights", weights, "--out", tmp_path / "out")
        line = one_error_line(err)
        assert status == 1 and not out and not (tmp_path / "out").exists()
        assert "do not have the sha256 torchvision publishes (expected prefix 397923af" in line
        assert "--allow-unverified-weights" in line
    status, out, err = run(capsys, "explain", image, "--weights", "imagenet", "--allow-unverified-weights",
                           "--composite", "uniform", "--rule", "zero", "--out", tmp_path / "out")
    assert status == 0, err
    assert one_error_line(err).startswith("lrpkit: warning: UNVERIFIED WEIGHTS - ")
    assert out.startswith("model: vgg16 with UNVERIFIED weights (")


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


# --------------------------------------------------------------------------------------------
# train


@pytest.fixture
def tiny_profile(monkeypatch):
    """The smoke profile made tiny (32 px, 1/16 of the widths, 768 images, checkpoints every 256
    images): seconds, not a minute; one torch thread."""
    import dataclasses
    import functools

    from lrpkit import synthetic, training
    if not (MIRROR / "SOURCES.tsv").is_file():
        pytest.skip(f"no image mirror at {MIRROR}")
    monkeypatch.setenv("LRPKIT_DATA_MIRROR", str(MIRROR))
    config = dataclasses.replace(training.PROFILES["smoke"], task=synthetic.TaskConfig(size=32), images=768,
                                 eval_images=64, width=4, hidden=16)
    monkeypatch.setitem(training.PROFILES, "smoke", config)
    monkeypatch.setattr(training, "train", functools.partial(training.train, checkpoint_every=256))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield config
    torch.set_num_threads(threads)


@pytest.mark.parametrize("argv, words", [
    (["train"], "the following arguments are required: --out"),
    (["train", "--out", "x", "--profile", "fast"], "argument --profile: invalid choice: 'fast'"),
    (["train", "--out", "x", "--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
])
def test_train_usage_errors_exit_2_with_one_line(capsys, argv, words):
    status, out, err = run(capsys, *argv)
    assert status == 2 and not out
    assert words in one_error_line(err)


def test_train_help(capsys):
    status, out, err = run(capsys, "train", "--help")
    text = " ".join(out.split())
    assert status == 0 and not err and "--profile {smoke,quick,full}" in text and "VGG-16's 38 layer indices" in text


def test_train_refuses_a_file_as_out_before_any_work(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", tmp_path / "file")
    assert status == 1 and not out and "is a file, not a folder; choose another --out" in one_error_line(err)


def test_train_writes_weights_reuses_them_and_refuses_another_seed(capsys, tmp_path, tiny_profile):
    """`lrpkit train` prints the test accuracy and the sha256; the same command again reuses the
    result; another --seed is refused in one line (exit 1) unless --force."""
    import json

    from lrpkit import training
    out_dir = tmp_path / "trained"
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--quiet")
    assert status == 0, err
    record = json.loads((out_dir / "training.json").read_text())
    lines = out.splitlines()
    assert lines[0].startswith("trained vgg16-layout (")
    assert f"test accuracy {record['test']['accuracy']:.2%}" in lines[0]
    assert lines[1] == f"weights -> {out_dir / 'weights.pt'} (sha256 {record['sha256']})"
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--quiet")
    assert status == 0 and "reusing it" in out and "reused vgg16-layout" in out and record["sha256"] in out
    before = files(out_dir)
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--seed", "1", "--quiet")
    line = one_error_line(err)
    assert status == 1 and "is of another training config (seed 0 there, 1 here); pass --force" in line
    assert files(out_dir) == before
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--seed", "1", "--force", "--quiet")
    assert status == 0, err
    assert json.loads((out_dir / "training.json").read_text())["config"]["seed"] == 1


def test_train_interrupted_exits_130_and_the_same_command_continues(capsys, tmp_path, monkeypatch, tiny_profile):
    """Ctrl-C after the first checkpoint: exit 130, only checkpoint.pt in --out (no half-written
    weights); the same command continues and gives the weights of an uninterrupted run."""
    from lrpkit import training
    real = training._learning_rate

    def interrupt(config, seen):
        if seen == 384:
            raise KeyboardInterrupt
        return real(config, seen)

    monkeypatch.setattr(training, "_learning_rate", interrupt)
    out_dir = tmp_path / "trained"
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--quiet")
    assert status == 130 and err.endswith("lrpkit: interrupted\n")
    assert "interrupted: " in out and "run the same training again to continue" in out
    assert sorted(files(out_dir)) == ["checkpoint.pt"]
    monkeypatch.setattr(training, "_learning_rate", real)
    status, out, err = run(capsys, "train", "--profile", "smoke", "--out", out_dir, "--quiet")
    assert status == 0 and "continuing from the checkpoint at 256 of 768 images" in out, err
    uninterrupted = training.train(tiny_profile, tmp_path / "whole", progress=False, echo=lambda line: None)
    assert uninterrupted.sha256 in out
