"""The book build pipeline on tiny books: registry checks, cache keys, failures that name their
cause (a raising notebook, a missing glue key), and Sphinx's -W as a second line of defence.

The notebooks here import only numpy/matplotlib, so each runs in about a second; the real book is
built (smoke profile) and browsed in tests/test_book_site.py.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from lrpkit import book, data, provenance
from lrpkit.book import cache as book_cache, pipeline as book_pipeline

REPO = Path(__file__).resolve().parents[1]


def make_notebook(path: Path, params: str, *cells: str, outputs: bool = False) -> None:
    """A clean source notebook: a title, a `parameters` cell, then code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    param_cell = nbformat.v4.new_code_cell(params)
    param_cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny figure"), param_cell]
    nb.cells += [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]
    if outputs:
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="stale\n")]
        nb.cells[-1].execution_count = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


PARAMS = 'device = "cpu"\nweights = "auto"\nprofile = "quick"\nseed = 0\nscale = 1.0'
GOOD_CELLS = (
    "from myst_nb import glue\nfrom lrpkit.book import provenance",
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, scale])
    glue("line", fig, display=False)
    glue("slope", scale)
    """,
    """
    p = provenance(dict(device=device, weights=weights, profile=profile, seed=seed, scale=scale))
    glue("provenance", p)
    glue("banner", p.banner())
    """,
)
CHAPTER = """\
# Tiny chapter

```{{glue}} banner
:doc: _generated/chap/{fid}.ipynb
```

```{{glue}} {key}
:doc: _generated/chap/{fid}.ipynb
```

The slope is {{glue:text}}`_generated/chap/{fid}.ipynb::slope:.2f`.

```{{glue}} provenance
:doc: _generated/chap/{fid}.ipynb
```
"""


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    """A one-chapter book with one figure notebook, using the project's _config.yml."""
    root = tmp_path / "tiny"
    root.mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO / "book" / "_ext", root / "book" / "_ext")
    shutil.copytree(REPO / "book" / "_static", root / "book" / "_static")
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    (root / "_toc.yml").write_text(textwrap.dedent("""\
        format: jb-book
        root: book/index
        chapters:
          - file: book/chap
            sections:
              - glob: book/_generated/chap/*
        """))
    (root / "book" / "index.md").write_text("# Tiny book\n\nSee the chapter.\n")
    (root / "book" / "chap.md").write_text(CHAPTER.format(fid="fig-a", key="line"))
    make_notebook(root / "notebooks" / "a.ipynb", PARAMS, *GOOD_CELLS)
    (root / "notebooks" / "figures.yml").write_text(textwrap.dedent("""\
        figures:
          fig-a:
            title: A line
            notebook: a.ipynb
            chapter: book/chap
            data: [castle]
            parameters:
              all: {scale: 2.0}
              smoke: {scale: 0.5}
        """))
    return root


def run_main(root: Path, capsys, *extra: str) -> tuple[int, str]:
    code = book.main(["build", "--root", str(root), "--profile", "smoke", "--device", "cpu",
                      *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def test_registry_resolves_parameters_per_profile(tiny_book):
    (figure,) = book.load_registry(tiny_book)
    common = {"device": "cpu", "weights": "auto", "seed": 3}
    assert figure.resolved_parameters("smoke", common) == {
        "device": "cpu", "weights": "auto", "seed": 3, "profile": "smoke", "scale": 0.5}
    assert figure.resolved_parameters("full", common)["scale"] == 2.0
    assert figure.output == Path("book/_generated/chap/fig-a.ipynb")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.replace("smoke: {scale: 0.5}", "tiny: {scale: 0.5}"), "parameters has ['tiny']"),
    (lambda r: r.replace("smoke: {scale: 0.5}", "smoke: {sigma: 0.5}"),
     "sets ['sigma'], which notebooks/a.ipynb's 'parameters' cell does not define"),
    (lambda r: r.replace("smoke: {scale: 0.5}", "smoke: {device: cuda}"),
     "these come from the build command"),
    (lambda r: r.replace("chapter: book/chap", "chapter: book/nowhere"), "book/nowhere.md not found"),
    (lambda r: r.replace("notebook: a.ipynb", "notebook: missing.ipynb"),
     "notebook not found"),
    (lambda r: r.replace("fig-a:", "Fig A:"), "ids are lower-case"),
])
def test_registry_errors_name_the_problem(tiny_book, edit, message):
    path = tiny_book / "notebooks" / "figures.yml"
    path.write_text(edit(path.read_text()))
    with pytest.raises((ValueError, FileNotFoundError), match=None) as info:
        book.load_registry(tiny_book)
    assert message in str(info.value)


def test_notebooks_must_be_clean_and_parameterized(tiny_book):
    nb = tiny_book / "notebooks" / "a.ipynb"
    make_notebook(nb, PARAMS, *GOOD_CELLS, outputs=True)
    with pytest.raises(ValueError, match="cell 5 has committed outputs"):
        book.load_registry(tiny_book)
    make_notebook(nb, 'device = "cpu"\nprofile = "quick"\nseed = 0\nscale = 1.0', *GOOD_CELLS)
    with pytest.raises(ValueError, match="does not define weights"):
        book.load_registry(tiny_book)
    raw = nbformat.read(nb, as_version=4)
    raw.cells[1].metadata["tags"] = []
    nbformat.write(raw, nb)
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters'"):
        book.load_registry(tiny_book)


def test_project_notebooks_are_clean_and_registered():
    """Every notebook in notebooks/ is in the registry, clean, with the common parameters."""
    figures = book.load_registry(REPO)            # raises on outputs / missing parameters
    registered = {f.notebook.name for f in figures}
    on_disk = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    assert on_disk == registered


# --------------------------------------------------------------------------------------------
# Cache keys
# --------------------------------------------------------------------------------------------

def test_cache_key_follows_notebook_parameters_data_and_lrpkit(tiny_book, monkeypatch):
    (figure,) = book.load_registry(tiny_book)
    params = figure.resolved_parameters("smoke", {"device": "cpu", "weights": "auto", "seed": 0})

    def key(p=params):
        return book.fingerprint(book.figure_inputs(tiny_book, figure, p))

    base = key()
    assert key() == base                                           # deterministic
    assert key({**params, "scale": 0.25}) != base                  # parameters
    assert key({**params, "device": "cuda"}) != base
    records = data.manifest()
    assert book.data_checksums(figure.data, f"figure {figure.id!r}") == {"castle.jpg": next(
        r.sha256 for r in records if r.file == "castle.jpg")}
    changed = [dataclasses.replace(r, sha256="0" * 64) if r.file == "castle.jpg" else r
               for r in records]
    monkeypatch.setattr(data, "manifest", lambda: changed)        # data checksum
    assert key() != base
    monkeypatch.setattr(data, "manifest", lambda: records)
    assert key() == base
    nb = tiny_book / "notebooks" / "a.ipynb"
    nb.write_bytes(nb.read_bytes() + b"\n")                        # notebook file
    assert key() != base
    nb.write_bytes(nb.read_bytes()[:-1])
    assert key() == base
    monkeypatch.setattr(book_cache, "lrpkit_version", lambda: "9.9.9+src.000000000000")
    assert key() != base                                           # lrpkit version/source


def test_unknown_image_set_is_a_clear_error(tiny_book):
    path = tiny_book / "notebooks" / "figures.yml"
    path.write_text(path.read_text().replace("data: [castle]", "data: [castel]"))
    (figure,) = book.load_registry(tiny_book)
    with pytest.raises(ValueError, match=r"data \['castel'\] are not image sets"):
        book.data_checksums(figure.data, f"figure {figure.id!r}")


def test_weights_are_part_of_the_inputs(tiny_book, tmp_path):
    (figure,) = book.load_registry(tiny_book)
    common = {"device": "cpu", "seed": 0}
    state = tmp_path / "state.pth"
    state.write_bytes(b"weights v1")
    keys = {w: book.fingerprint(book.figure_inputs(
        tiny_book, figure, figure.resolved_parameters("smoke", {**common, "weights": w})))
        for w in ("auto", "random", str(state))}
    assert len(set(keys.values())) == 3
    state.write_bytes(b"weights v2")
    assert book.fingerprint(book.figure_inputs(tiny_book, figure, figure.resolved_parameters(
        "smoke", {**common, "weights": str(state)}))) != keys[str(state)]
    with pytest.raises(FileNotFoundError, match="no such file"):
        book.figure_inputs(tiny_book, figure, figure.resolved_parameters(
            "smoke", {**common, "weights": str(tmp_path / "missing.pth")}))


def test_weights_inputs_read_the_pretrained_file_of_the_given_network(tmp_path, monkeypatch):
    from lrpkit import checksums, models

    asked = []
    monkeypatch.setattr(models, "pretrained_file", lambda arch: asked.append(arch) or tmp_path / f"{arch}.pth")
    (tmp_path / "vgg11.pth").write_bytes(b"vgg11 weights")
    assert book.weights_inputs("auto") == {"pretrained_file_sha256": None} and asked == ["vgg16"]   # the book's
    assert book.weights_inputs("imagenet", arch="vgg11") == {
        "pretrained_file_sha256": checksums.sha256_file(tmp_path / "vgg11.pth")} and asked[-1] == "vgg11"
    with pytest.raises(FileNotFoundError, match=r"no such file \(use auto, imagenet, random or the path of a "
                                                r"VGG-16 state dict\)"):
        book.weights_inputs(str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="the path of a VGG-11 state dict"):
        book.weights_inputs(str(tmp_path / "missing.pth"), arch="vgg11")


def test_provenance_names_random_weights_and_identifies_them():
    import warnings

    from lrpkit import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", models.RandomWeightsWarning)
        a = models.vgg11(weights="random", seed=0)
        b = models.vgg11(weights="random", seed=0)
        c = models.vgg11(weights="random", seed=1)
    params = {"device": "cpu", "weights": "random", "profile": "smoke", "seed": 0}
    pa, pb, pc = (book.provenance(params, model=m) for m in (a, b, c))
    assert pa.random_weights and "Random weights" in pa.banner()._repr_html_()
    assert pa.weights["state_sha256"] == pb.weights["state_sha256"] != pc.weights["state_sha256"]
    record = book.provenance_record({"data": {"text/html": pa._repr_html_()}})
    assert record["weights"]["source"] == "random" and record["parameters"] == params
    assert not book.provenance(params).random_weights                # no network involved
    assert record["machine"] == provenance.machine() and record["machine"]["onednn_isa"] != "unknown"
    row = pa._repr_html_().split("<th>Machine</th>")[1].split("</tr>")[0]
    assert record["machine"]["cpu"] in row and record["machine"]["onednn_convolution"] in row
    with pytest.raises(ValueError, match="missing weights"):
        book.provenance({"device": "cpu", "profile": "smoke", "seed": 0})


# --------------------------------------------------------------------------------------------
# Glue references
# --------------------------------------------------------------------------------------------

def test_glue_reference_parser(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(textwrap.dedent("""\
        ```{glue} fig-x
        :doc: _generated/c/a.ipynb
        ```
        :::{glue:any} table
        :doc: ../b.ipynb
        :::
        Text {glue:text}`_generated/c/a.ipynb::logit:.3f` and {glue}`_generated/c/a.ipynb::n`.
        ```{glue} local-only
        ```
        """))
    assert book.glue_references(page) == [
        (1, "_generated/c/a.ipynb", "fig-x"), (4, "../b.ipynb", "table"),
        (7, "_generated/c/a.ipynb", "logit"), (7, "_generated/c/a.ipynb", "n"),
        (8, None, "local-only")]


# --------------------------------------------------------------------------------------------
# Builds (these start Jupyter kernels and Sphinx: a few seconds each)
# --------------------------------------------------------------------------------------------

def test_tiny_book_builds_then_skips_and_reruns_on_change(tiny_book, capsys):
    code, out = run_main(tiny_book, capsys)
    assert code == 0, out
    html = (tiny_book / "_build" / "html" / "book" / "chap.html").read_text()
    assert "lrpkit-provenance-record" in html and "0.50" in html   # provenance + glued number
    assert (tiny_book / "_build" / "logs" / "fig-a.log").read_text().count("Executing Cell") == 6
    summary = json.loads((tiny_book / "_build" / "book-build.json").read_text())
    assert summary["executed"] == ["fig-a"]

    code, out = run_main(tiny_book, capsys)                        # nothing changed
    summary = json.loads((tiny_book / "_build" / "book-build.json").read_text())
    assert code == 0 and summary["executed"] == [] and summary["cached"] == ["fig-a"]

    code, out = run_main(tiny_book, capsys, "--seed", "1")         # a parameter changed
    summary = json.loads((tiny_book / "_build" / "book-build.json").read_text())
    assert code == 0 and summary["executed"] == ["fig-a"]
    record = book.provenance_record(
        book.glue_keys(tiny_book / "book" / "_generated" / "chap" / "fig-a.ipynb")["provenance"])
    assert record["parameters"]["seed"] == 1 and record["parameters"]["scale"] == 0.5
    assert record["lrpkit_version"] == book.lrpkit_version()

    code, out = run_main(tiny_book, capsys, "--seed", "0")         # back: from the cache
    summary = json.loads((tiny_book / "_build" / "book-build.json").read_text())
    assert code == 0 and summary["executed"] == []


def test_broken_notebook_names_notebook_cell_and_error(tiny_book, capsys):
    cells = list(GOOD_CELLS)
    cells.insert(1, "ratio = scale / 0  # a bug")
    make_notebook(tiny_book / "notebooks" / "a.ipynb", PARAMS, *cells)
    code, out = run_main(tiny_book, capsys)
    assert code == 1
    assert "notebooks/a.ipynb" in out
    assert "cell 4 of 6" in out and "ratio = scale / 0" in out      # 1-based, as Jupyter shows
    assert "ZeroDivisionError: float division by zero" in out
    assert not (tiny_book / "_build" / "html").exists()            # no site from a failed run
    log = (tiny_book / "_build" / "logs" / "fig-a.log").read_text()
    assert "ZeroDivisionError" in log and "FAILED" in log


def test_missing_glue_key_fails_the_build(tiny_book, capsys):
    (tiny_book / "book" / "chap.md").write_text(CHAPTER.format(fid="fig-a", key="lines"))
    code, out = run_main(tiny_book, capsys)
    assert code == 1
    assert "book/chap.md:7: missing glue key 'lines'" in out
    assert "book/_generated/chap/fig-a.ipynb provides" in out and "'line'" in out


def test_sphinx_fails_on_a_missing_glue_key_too_and_keeps_failing(tiny_book, capsys,
                                                                   monkeypatch):
    """With the build's own check bypassed, -W turns myst-nb's warning into a failure, and a
    second build does not pass silently on Sphinx's saved environment."""
    (tiny_book / "book" / "chap.md").write_text(CHAPTER.format(fid="fig-a", key="lines"))
    monkeypatch.setattr(book_pipeline, "check_glue", lambda root, pages: None)
    for _ in range(2):
        code, out = run_main(tiny_book, capsys)
        assert code == 1
        assert "jupyter-book build failed" in out
        assert "Glue reference 'lines' not found" in out


def test_notebook_without_provenance_is_refused(tiny_book, capsys):
    make_notebook(tiny_book / "notebooks" / "a.ipynb", PARAMS, *GOOD_CELLS[:2])
    code, out = run_main(tiny_book, capsys)
    assert code == 1 and "glued no 'provenance' / 'banner'" in out


def test_unknown_chapter_is_refused(tiny_book, capsys):
    code, out = run_main(tiny_book, capsys, "--chapter", "nope")
    assert code == 1 and "--chapter 'nope'" in out and "chap" in out


# --------------------------------------------------------------------------------------------
# Checks before any notebook runs; what the pages and the summary say about the weights
# --------------------------------------------------------------------------------------------

def _only_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return lines[0]


def test_missing_gpu_is_refused_before_any_notebook_runs(tiny_book, capsys, monkeypatch):
    """`device=cuda` without a GPU used to run every notebook that loads no model (and call
    them made "on cuda") before failing in the first one that does."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    code, out = run_main(tiny_book, capsys, "--device", "cuda")
    assert code == 1
    assert _only_line(out).startswith("book build failed: --device 'cuda': PyTorch sees no CUDA GPU")
    assert "--device cpu" in out
    assert not (tiny_book / "_build" / "logs" / "fig-a.log").exists()
    assert not (tiny_book / "book" / "_generated").exists()


@pytest.mark.parametrize("kind", ["imagenet", "damaged file"])
def test_unusable_weights_are_refused_before_any_notebook_runs(tiny_book, capsys, monkeypatch,
                                                               tmp_path, kind):
    """`weights=imagenet` offline (or a file that is no VGG-16 state dict) used to fail only
    inside the first notebook that loads a model, after the others had run."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))   # an empty hub cache
    monkeypatch.setenv("LRPKIT_OFFLINE", "1")
    if kind == "imagenet":
        weights, expected = "imagenet", "are not in the cache and downloading is off"
    else:
        damaged = tmp_path / "vgg16.pth"
        damaged.write_bytes(b"not a state dict")
        weights, expected = str(damaged), "cannot read weights file"
    code, out = run_main(tiny_book, capsys, "--weights", weights)
    assert code == 1
    line = _only_line(out)
    assert line.startswith(f"book build failed: --weights {weights!r}: ") and expected in line
    assert not (tiny_book / "_build" / "logs" / "fig-a.log").exists()


def test_weights_note_names_the_whole_book_or_the_figures():
    assert book.weights_note(["fig-a", "fig-b"], []) is None
    assert book.weights_note([], []) is None
    whole = book.weights_note(["fig-a", "fig-b"], ["fig-b", "fig-a"])
    assert whole.startswith("RANDOM WEIGHTS: all 2 figure(s) of the book")
    some = book.weights_note(["fig-a", "fig-b", "fig-c"], ["fig-c"])
    assert some.startswith("RANDOM WEIGHTS in 1 of the 3 figures with a network: fig-c")


RANDOM_NETWORK_CELLS = (
    GOOD_CELLS[0] + "\nimport sys, warnings\nfrom lrpkit import models",
    """
    print("progress of", "/".join(["", "tmp", "stderr-only"]), file=sys.stderr)
    from tqdm.auto import tqdm
    sum(tqdm(range(3), desc="a progress bar"))   # a widget where ipywidgets is installed
    warnings.warn("a warning naming " + "/".join(["", "home", "warned"]))
    model = models.vgg11(weights=weights, seed=seed)
    glue("slope", scale)
    """,
    """
    p = provenance(dict(device=device, weights=weights, profile=profile, seed=seed, scale=scale),
                   model=model)
    glue("provenance", p)
    glue("banner", p.banner())
    """,
)


def test_random_weights_page_banner_first_no_stderr_and_a_summary_note(tiny_book, capsys):
    """A figure made with random weights: its executed page shows the banner right after its
    title and nothing written to stderr (that stays in the log); the summary says the whole
    book used random weights."""
    (tiny_book / "book" / "chap.md").write_text(CHAPTER.format(fid="fig-a", key="slope"))
    make_notebook(tiny_book / "notebooks" / "a.ipynb", PARAMS, *RANDOM_NETWORK_CELLS)
    code, out = run_main(tiny_book, capsys, "--weights", "random")
    assert code == 0, out
    assert "RANDOM WEIGHTS: all 1 figure(s) of the book" in out
    summary = json.loads((tiny_book / "_build" / "book-build.json").read_text())
    assert summary["network_figures"] == summary["random_weights"] == ["fig-a"]

    executed = nbformat.read(tiny_book / "book" / "_generated" / "chap" / "fig-a.ipynb", 4)
    assert executed.cells[0].source == "# Tiny figure"
    notice = executed.cells[1]
    assert notice.metadata["tags"] == ["remove-input"]
    assert "lrpkit-random-weights" in notice.outputs[0]["data"]["text/html"]
    streams = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
               if o.get("output_type") == "stream"]
    assert all(o["name"] != "stderr" for o in streams)
    assert str(tiny_book) not in json.dumps(executed.metadata)      # papermill's paths
    # the progress bar drew a widget (ipywidgets comes with otter-grader); it is gone with its state
    assert importlib.util.find_spec("ipywidgets") is not None
    assert "widgets" not in executed.metadata
    assert not any("widget" in key for c in executed.cells if c.cell_type == "code" for o in c.outputs
                   for key in o.get("data", {}))

    page = (tiny_book / "_build" / "html" / "book" / "_generated" / "chap" / "fig-a.html")
    text = page.read_text()
    assert "/tmp/stderr-only" not in text and "/home/warned" not in text
    assert "require.min.js" not in text and "cdn.jsdelivr" not in text   # no widget script from elsewhere
    assert text.count("lrpkit-random-weights") == 1               # once, first
    assert text.index("<h1") < text.index("lrpkit-random-weights") < text.index("cell_input")
    log = (tiny_book / "_build" / "logs" / "fig-a.log").read_text()
    assert "/tmp/stderr-only" in log and "/home/warned" in log     # kept for the developer

    chapter = (tiny_book / "_build" / "html" / "book" / "chap.html").read_text()
    assert "lrpkit-random-weights" in chapter                      # the glue still pastes


def test_provenance_shows_no_folders_of_the_build_machine():
    import dataclasses as dc
    import warnings

    from lrpkit import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", models.RandomWeightsWarning)
        model = models.vgg11(weights="random", seed=0)
    model.lrpkit_weights = dc.replace(
        models.weights_info(model), source="file", path="/home/someone/weights/vgg11.pth",
        requested="/home/someone/weights/vgg11.pth", sha256="ab" * 32,
        warning="place it in /root/.cache/torch/hub/checkpoints")
    params = {"device": "cpu", "weights": "/home/someone/weights/vgg11.pth", "profile": "smoke",
              "seed": 0}
    p = book.provenance(params, model=model)
    shown = p._repr_html_() + p.banner()._repr_html_()
    assert "/home/" not in shown and "/root/" not in shown
    assert "vgg11.pth" in shown and "ab" * 32 in shown             # still identified
    record = book.provenance_record({"data": {"text/html": p._repr_html_()}})
    assert record["parameters"]["weights"] == "vgg11.pth" and "warning" not in record["weights"]


def test_composite_table_shows_the_options_of_each_composite():
    from lrpkit import composites

    uniform = composites.uniform("zero", heuristic="vanilla", maxpool="max")
    tutorial = composites.tutorial(gamma=0.5)
    both = book.composite_table([uniform, tutorial])
    assert list(both.columns) == ["Composite", "Layer index", "Rule", "Hyperparameters",
                                  "Denominator", "Max-pooling"]
    assert both["Composite"].tolist() == [uniform.name] + [tutorial.name] * 4
    assert both[["Layer index", "Rule", "Hyperparameters"]].values.tolist() == (
        uniform.table().values.tolist() + tutorial.table().values.tolist())
    assert both["Denominator"].tolist() == ["vanilla"] + ["tutorial"] * 4
    code = book.composite_table([composites.thesis_code_tutorial(0.0, 0.25, h) for h in ("shift", "zennit")])
    assert set(code["Denominator"]) == {"thesis code's shift, z + 1e-6 (unsigned)",
                                        "thesis code's zennit stabilizer, z ± 1e-6 (signed)"}   # never "vanilla"
    assert both["Max-pooling"].tolist() == ["winner takes all"] + ["as 2×2 average"] * 4
    alone = book.composite_table([tutorial])
    assert "Composite" not in alone.columns and len(alone) == 4
    html = book.html_table(alone).data
    assert html.startswith('<div class="lrpkit-table" style="overflow-x: auto; max-width: 100%">')   # scrolls, the page does not
    assert '<table border="1" class="dataframe table">' in html and "γ = 0.5" in html


def test_the_sidebar_lists_each_chapter_s_figures_in_the_order_its_prose_shows_them():
    """A chapter's executed notebooks follow it in _toc.yml in the order its page shows their figures
    (glue keys ``fig-…``; tables and the banner do not count), so that the sidebar and "Next" follow
    the reading order. The toc lists every figure the registry gives the chapter."""
    import re

    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    registry = yaml.safe_load((REPO / "notebooks" / "figures.yml").read_text(encoding="utf-8"))["figures"]
    chapters = [c for part in toc["parts"] for c in part["chapters"] if c.get("sections")]
    assert chapters
    for chapter in chapters:
        name = Path(chapter["file"]).name
        listed = [Path(s["file"]).name for s in chapter["sections"]]
        assert sorted(listed) == sorted(k for k, v in registry.items() if v["chapter"] == chapter["file"]), name
        prose = (REPO / f"{chapter['file']}.md").read_text(encoding="utf-8")
        shown = re.findall(r"```\{glue\} fig-[\w-]+\n:doc: _generated/" + re.escape(name) + r"/([\w-]+)\.ipynb",
                           prose)
        first = list(dict.fromkeys(shown))
        assert [f for f in listed if f in first] == first, (name, listed, first)
