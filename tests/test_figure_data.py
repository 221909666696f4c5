"""lrpkit.figure_data and Provenance.attach: a figure's data saved as CSV or NPZ, linked from its box, written
only where the build (or the caller) says, never half-written."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lrpkit import figure_data, provenance
from lrpkit.book import downloads

PARAMETERS = dict(device="cpu", weights="random", profile="smoke", seed=0)


def test_tables_become_csv_and_arrays_npz(tmp_path):
    table = pd.DataFrame({"gamma": [0.0, 0.25], "auc": [1.5, 2.5]})
    path = figure_data.save("aucs", table, tmp_path)
    assert path.name == "aucs.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    arrays = {"relevance": torch.arange(12.0).reshape(3, 2, 2), "values": np.array([0.0, 0.1, 1.0])}
    path = figure_data.save("heatmaps", arrays, tmp_path)
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["relevance"], arrays["relevance"].numpy())
        np.testing.assert_array_equal(saved["values"], arrays["values"])
    with np.load(figure_data.save("one", np.eye(2), tmp_path)) as saved:
        np.testing.assert_array_equal(saved["one"], np.eye(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aucs.csv", "heatmaps.npz", "one.npz"]


@pytest.mark.parametrize("name, data, message", [
    ("Heat maps", np.eye(2), "figure data name"),
    ("../up", np.eye(2), "figure data name"),
    ("things", {"a": object()}, "not an array"),
])
def test_bad_names_and_data_are_refused_before_anything_is_written(tmp_path, name, data, message):
    with pytest.raises(ValueError, match=message):
        figure_data.save(name, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError):
        figure_data.save("heatmaps", np.eye(2), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_attach_writes_only_where_the_build_says(tmp_path, monkeypatch):
    monkeypatch.delenv(figure_data.FOLDER_ENV, raising=False)
    monkeypatch.delenv(figure_data.FIGURE_ENV, raising=False)
    p = provenance.provenance(PARAMETERS)
    p.attach("table", pd.DataFrame({"a": [1]}))
    assert p.data_files == [] and "Downloads" not in p._repr_html_()      # a reader's run writes nothing

    monkeypatch.setenv(figure_data.FOLDER_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(figure_data.FIGURE_ENV, "fig-9-9")
    p = provenance.provenance(PARAMETERS)
    p.attach("table", pd.DataFrame({"a": [1]})).attach("heatmaps", np.zeros((2, 4, 4)))
    p.attach("table", pd.DataFrame({"a": [2]}))                          # attached again: replaced, listed once
    assert p.data_files == ["heatmaps.npz", "table.csv"]
    assert pd.read_csv(tmp_path / "data" / "table.csv")["a"].tolist() == [2]
    box = p._repr_html_()
    for name in ("fig-9-9.ipynb", "heatmaps.npz", "table.csv"):
        assert f'href="lrpkit-root:figure-data/fig-9-9/{name}"' in box
    assert provenance.provenance_record(box)["data_files"] == ["heatmaps.npz", "table.csv"]


def test_publish_copies_the_data_and_the_executed_notebook(tmp_path):
    entry = tmp_path / "cache" / "entry"
    (entry / downloads.DATA).mkdir(parents=True)
    (entry / downloads.DATA / "table.csv").write_text("a\n1\n")
    (entry / "notebook.ipynb").write_text("{}")
    stale = tmp_path / downloads.FOLDER / "figure-data" / "fig-1" / "old.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    target = downloads.publish(tmp_path, "fig-1", entry, entry / "notebook.ipynb")
    assert sorted(p.name for p in target.iterdir()) == ["fig-1.ipynb", "table.csv"]
    assert not any(p.name.endswith(".partial") for p in target.parent.iterdir())
