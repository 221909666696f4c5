"""`lrpkit explain --check`: one verdict line per image, the library's verdict."""
import os
from pathlib import Path

import pytest

from lrpkit import cli, composites, data
from lrpkit.cli import commands


@pytest.fixture
def newt():
    mirror = os.environ.get(data.MIRROR_ENV)
    path = Path(mirror or ".") / "imagenet-samples" / "n01630670_common_newt.JPEG"
    if not path.is_file():
        pytest.skip(f"no image mirror with the common newt ({data.MIRROR_ENV})")
    return path


def explain_check(capsys, tmp_path, image):
    status = cli.main(["explain", str(image), "--weights", "random", "--offline", "--out", str(tmp_path), "--check"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return [line for line in out.splitlines() if ": check: " in line]


def test_check_flags_the_thesis_code_vanilla_patch(capsys, tmp_path, newt, monkeypatch):
    """The thesis code's early vanilla (Fig. 2.3's map, unsigned z + 1e-6) on the common newt with
    random weights: one patch, relevance blown up at layer 19."""
    monkeypatch.setattr(commands, "_composite", lambda args: composites.thesis_code_tutorial(0.0, 0.25, "shift"))
    (line,) = explain_check(capsys, tmp_path, newt)
    assert line.startswith(f"{newt}: check: unstable: ")
    assert "at layer 19 (features.19, LRP-ε)" in line


def test_check_passes_the_tutorial_heuristic(capsys, tmp_path, newt):
    assert explain_check(capsys, tmp_path, newt) == [f"{newt}: check: stable"]
