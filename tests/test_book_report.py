"""The execution report page (lrpkit.book.report): one row per figure notebook, with the time and date
of the run that made it read from the executed notebook, and written whole or not at all.

The first tests use a synthetic build summary and hand-made executed notebooks; the last runs the
pipeline on a one-figure book (one papermill run, Jupyter Book replaced by a stub) to check that the
report exists when the site is rendered and reads papermill's own records.
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from lrpkit import book
from lrpkit.book import pages, pipeline as book_pipeline, report

REPO = Path(__file__).resolve().parents[1]

REGISTRY = """\
figures:
  fig-a:
    title: "A line | with a bar"
    notebook: a.ipynb
    chapter: book/chap
  fig-b:
    title: A curve
    notebook: b.ipynb
    chapter: book/other
experiments:
  grid-x:
    title: The grid
    config: experiments/x.yaml
networks:
  net-y:
    title: The network
"""


def executed(path: Path, duration: float, end: str, **parameters) -> None:
    """An executed notebook with the metadata papermill writes."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A figure")]
    nb.metadata["papermill"] = {"duration": duration, "start_time": "2026-11-30T09:00:00.000001",
                                "end_time": end, "exception": None, "parameters": parameters,
                                "input_path": "notebooks/x.ipynb", "output_path": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def built(tmp_path):
    """A book root after a build: the registry, two executed notebooks and the build's summary.
    fig-a ran in this build; fig-b came from the cache, made by an earlier run on another device
    and profile than this build's."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "figures.yml").write_text(REGISTRY)
    executed(root / "book/_generated/chap/fig-a.ipynb", 11.64, "2026-12-06T10:00:11.5",
             profile="smoke", device="cpu", seed=0)
    executed(root / "book/_generated/other/fig-b.ipynb", 73.42, "2026-11-30T09:01:13.4",
             profile="full", device="cuda", seed=0)
    summary = {"profile": "smoke", "device": "cpu", "weights": "/home/someone/vgg16-397923af.pth", "seed": 0,
               "figures": [
                   {"figure": "fig-a", "status": "executed", "seconds": 12.9, "fingerprint": "f1",
                    "output": "book/_generated/chap/fig-a.ipynb", "log": "_build/logs/fig-a.log", "error": None},
                   {"figure": "fig-b", "status": "cached", "seconds": 0.04, "fingerprint": "f2",
                    "output": "book/_generated/other/fig-b.ipynb", "log": "_build/cache/x/run.log", "error": None}],
               "executed": ["fig-a"], "cached": ["fig-b"],
               "networks": [{"network": "net-y", "status": "reused", "seconds": 0.2, "fingerprint": "n",
                             "folder": "book/_generated/_networks/net-y/smoke", "sha256": "s", "test_accuracy": 0.9}],
               "experiments": [{"experiment": "grid-x", "status": "ran", "seconds": 31.5, "fingerprint": "e",
                                "results": "book/_generated/_experiments/grid-x/smoke", "figure_key": "k"}],
               "notebook_seconds": 48.0}
    return root, summary


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the table whose header row starts with ``header`` (split on unescaped bars)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = line.replace("\\|", "\0").strip("|").split("|")
        rows.append([c.strip().replace("\0", "|") for c in cells])
    return rows


def test_records_read_the_run_that_made_each_notebook(built):
    root, summary = built
    a, b = report.records(root, summary)
    assert set(a) == {"figure", "title", "chapter", "notebook", "profile", "device", "status", "seconds", "date"}
    assert (a["figure"], a["status"], a["seconds"], a["profile"], a["device"]) == ("fig-a", "ran", 11.6, "smoke", "cpu")
    # the cached figure: papermill's duration of the earlier run, not the 0.04 s of the cache lookup
    assert (b["figure"], b["status"], b["seconds"], b["profile"], b["device"]) == (
        "fig-b", "cache hit", 73.4, "full", "cuda")
    assert b["date"] == "2026-11-30T09:01:13Z" and a["date"] == "2026-12-06T10:00:11Z"
    assert (b["title"], b["chapter"], b["notebook"]) == ("A curve", "book/other", "notebooks/b.ipynb")


def test_a_ran_figure_without_papermill_duration_takes_the_build_s_time(built):
    root, summary = built
    path = root / "book/_generated/chap/fig-a.ipynb"
    nb = json.loads(path.read_text())
    del nb["metadata"]["papermill"]["duration"]
    path.write_text(json.dumps(nb))
    assert report.records(root, summary)[0]["seconds"] == 12.9


def test_report_page_has_one_row_per_figure_and_the_steps(built):
    root, summary = built
    path = report.write_report(root, summary)
    assert path == root / "book" / "_generated" / "execution-report.md"
    text = path.read_text(encoding="utf-8")
    rows = table_rows(text, "| figure |")
    assert len(rows) == 2
    a, b = rows
    assert a == ["{doc}`fig-a <chap/fig-a>`", "A line | with a bar", "`smoke`", "`cpu`",
                 "11.6", "ran", "2026-12-06 10:00"]
    assert b == ["{doc}`fig-b <other/fig-b>`", "A curve", "`full`", "`cuda`",
                 "73.4", "cache hit", "2026-11-30 09:01"]
    assert "Computing the notebooks shown took 85 s in all." in text
    steps = table_rows(text, "| step |")
    assert steps == [["network", "`net-y`", "The network", "reused", "0.2"],
                     ["experiment", "`grid-x`", "The grid", "ran", "31.5"]]
    assert "48 s up to the rendering" in text
    assert "/home/someone" not in text and "`vgg16-397923af.pth`" in text      # no folder of the machine


def test_a_partial_build_says_which_share_of_the_registry_it_ran(built):
    root, summary = built
    text = report.report_markdown(root, {**summary, "figures": summary["figures"][:1]})
    assert len(table_rows(text, "| figure |")) == 1
    assert "This build ran 1 of the registry's 2 figure notebooks" in text
    assert "This build ran" not in report.report_markdown(root, summary)


def test_report_is_written_whole_or_not_at_all(built, monkeypatch):
    root, summary = built
    folder = root / "book" / "_generated"
    path = report.write_report(root, summary)
    assert sorted(p.name for p in folder.iterdir()) == ["chap", "execution-report.md", "other"]
    before = path.read_text()
    os.utime(path, ns=(1, 1))
    report.write_report(root, summary)                  # unchanged: not rewritten, Sphinx skips it
    assert path.stat().st_mtime_ns == 1

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    summary["figures"][0]["status"] = "cached"
    with pytest.raises(OSError, match="disk full"):
        report.write_report(root, summary)
    assert path.read_text() == before                    # the old page, and no temporary file
    assert sorted(p.name for p in folder.iterdir()) == ["chap", "execution-report.md", "other"]


def test_the_report_is_a_page_of_using_the_book_that_the_glue_check_reads(built):
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    part = next(p for p in toc["parts"] if p["caption"] == "Using the book")
    files = [c["file"] for c in part["chapters"]]
    assert files.index(report.REPORT.with_suffix("").as_posix()) == files.index("book/reproducing") + 1
    root, summary = built
    shutil.copy(REPO / "_toc.yml", root / "_toc.yml")
    (root / "book" / "index.md").write_text("# Index\n")
    assert root / report.REPORT not in pages.toc_pages(root)          # not yet written: skipped
    report.write_report(root, summary)
    found = pages.toc_pages(root)
    assert found.count(root / report.REPORT) == 1
    pages.check_glue(root, [root / report.REPORT])                    # no glue on it: passes


# --------------------------------------------------------------------------------------------
# In the pipeline (one papermill run of a tiny notebook: a few seconds)


def test_build_writes_the_report_before_rendering_from_papermill_s_records(tmp_path, monkeypatch):
    root = tmp_path / "tiny"
    (root / "book").mkdir(parents=True)
    (root / "book" / "chap.md").write_text("# Chapter\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('device = "cpu"\nweights = "random"\nprofile = "quick"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(textwrap.dedent("""\
        from myst_nb import glue
        from lrpkit.book import provenance
        p = provenance(dict(device=device, weights=weights, profile=profile, seed=seed))
        glue("provenance", p)
        glue("banner", p.banner())
        """))]
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "a.ipynb")
    (root / "notebooks" / "figures.yml").write_text("figures:\n  fig-a:\n    title: A figure\n"
                                                    "    notebook: a.ipynb\n    chapter: book/chap\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/chap\n")
    rendered = []

    def jupyter_book(root_, fresh, log):
        rendered.append((root_ / report.REPORT).read_text(encoding="utf-8"))

    monkeypatch.setattr(book_pipeline, "jupyter_book", jupyter_book)
    book.build(root, profile="smoke", device="cpu", weights="random", progress=False)
    book.build(root, profile="smoke", device="cpu", weights="random", progress=False)      # from the cache
    papermill = json.loads((root / "book/_generated/chap/fig-a.ipynb").read_text())["metadata"]["papermill"]
    first, second = (table_rows(text, "| figure |") for text in rendered)
    assert [r[5] for r in first + second] == ["ran", "cache hit"]
    assert first[0][4] == second[0][4] == f"{papermill['duration']:.1f}"
    assert first[0][2:4] == ["`smoke`", "`cpu`"]
