"""lrpkit.teaching.autograder: otter-grader, run for real, grades a student notebook with the checks.

The submissions are what ``python -m lrpkit.teaching student`` writes, with the student's cells
filled in: once with the book's own solutions (full points), once with one mistake (that
exercise's points lost, with its check's verdict in otter's output).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lrpkit import teaching
from lrpkit.teaching import autograder

pytest.importorskip("otter")

REPO = Path(__file__).resolve().parents[1]
PART_1 = REPO / "notebooks" / "implement-lrp-1-dense.ipynb"
OUTPUTS = {"correct": Path("/tmp/autograder-correct.txt"), "wrong": Path("/tmp/autograder-wrong.txt")}


def solutions(path: Path) -> dict:
    """Function name -> the body of the ``%%solution`` cell that defines it."""
    found = {}
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if source.startswith("%%solution"):
            body = source.split("\n", 1)[1]
            found[re.search(r"^def (\w+)\(", body, re.M).group(1)] = body
    return found


def filled(student: Path, target: Path, bodies: dict) -> Path:
    """The student notebook with every cell a student writes in (a function's stub, ending in
    ``raise NotImplementedError``) replaced by ``bodies[name]``."""
    nb = json.loads(student.read_text())
    replaced = set()
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        name = re.match(r"def (\w+)\(", source)
        if cell["cell_type"] == "code" and name and "raise NotImplementedError" in source:
            cell["source"] = bodies[name.group(1)]
            replaced.add(name.group(1))
    assert replaced == set(bodies), (replaced, set(bodies))
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return target


def otter_run(zip_path: Path, submission: Path, out: Path) -> tuple[str, dict]:
    """``otter run -a ZIP SUBMISSION -o OUT``: what it prints followed by the questions' output in
    results.json (what Gradescope shows a student), and the scores in results.json."""
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "otter", "run", "-a", str(zip_path), "-o", str(out),
                           str(submission)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tests = [t for t in json.loads((out / "results.json").read_text())["tests"] if "score" in t]
    output = done.stdout + "\nresults.json:\n" + "\n\n".join(t["output"] for t in tests)
    return output, {t["name"]: (t["score"], t["max_score"]) for t in tests}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autograder")
    (tmp / "student").mkdir()
    (tmp / "zips").mkdir()
    assert teaching.main(["student", str(PART_1), "--out", str(tmp / "student")]) == 0
    assert teaching.main(["autograder", "--out", str(tmp / "zips"), "--part", "1"]) == 0
    student = tmp / "student" / PART_1.name
    right = solutions(PART_1)
    wrong = dict(right, lrp_epsilon_dense=right["lrp_epsilon_dense"].replace(" + epsilon", ""))
    assert wrong["lrp_epsilon_dense"] != right["lrp_epsilon_dense"]      # ε missing
    graded = {}
    for kind, bodies in (("correct", right), ("wrong", wrong)):
        submission = filled(student, tmp / f"{kind}.ipynb", bodies)
        output, scores = otter_run(tmp / "zips" / autograder.autograder_name(1), submission, tmp / f"out-{kind}")
        OUTPUTS[kind].write_text(output + "\nresults.json scores: " + json.dumps(scores) + "\n")
        graded[kind] = output, scores
    return graded


def test_the_book_solutions_get_full_points(graded):
    output, scores = graded["correct"]
    part_1 = {name: e for name, e in teaching.EXERCISES.items() if e.part == 1}
    assert set(scores) == set(part_1)
    assert all(scores[name] == (e.points, e.points) for name, e in part_1.items()), scores


def test_a_mistake_loses_that_exercise_with_its_verdict(graded):
    output, scores = graded["wrong"]
    lost = {name: possible - score for name, (score, possible) in scores.items()}
    assert lost == {name: (teaching.EXERCISES[name].points if name == "lrp_epsilon_dense" else 0)
                    for name in scores}
    # the verdict the check gives the same function, word for word
    namespace = {}
    exec(solutions(PART_1)["lrp_epsilon_dense"].replace(" + epsilon", ""), namespace)  # noqa: S102
    verdict = teaching.check_lrp_epsilon_dense(namespace["lrp_epsilon_dense"])
    assert not verdict.passed and verdict.message.startswith("ε has no effect")
    assert verdict.message in output


def test_each_question_wraps_its_check():
    """The test file otter runs asserts the exercise's check and fails with its verdict."""
    from otter.test_files import create_test_file

    exercise = teaching.EXERCISES["lrp_0_dense"]
    path = Path("lrp_0_dense.py")
    test = create_test_file.__globals__["ExceptionTestFile"].from_string(autograder.test_file(exercise), str(path))
    assert test.name == "lrp_0_dense" and [c.points for c in test.test_cases] == [exercise.points]

    def flipped(a, W, b, R):
        return -a * ((R / (a @ W.T + b)) @ W)

    test.run({"lrp_0_dense": flipped})
    result = test.test_case_results[0]
    assert not result.passed and teaching.check_lrp_0_dense(flipped).message in result.message
    test.run({"lrp_0_dense": lambda a, W, b, R: a * ((R / (a @ W.T + b)) @ W)})
    assert test.test_case_results[0].passed


def test_every_exercise_is_a_question_of_its_part(tmp_path):
    paths = autograder.write_autograders(tmp_path)
    assert [p.name for p in paths] == [autograder.autograder_name(part) for part in autograder.PARTS]
    for part, path in zip(autograder.PARTS, paths):
        with zipfile.ZipFile(path) as zf:
            tests = sorted(n for n in zf.namelist() if n.startswith("tests/"))
            assert {"otter_config.json", "environment.yml", "run_autograder", "setup.sh"} <= set(zf.namelist())
            assert autograder.REQUIREMENT in zf.read("environment.yml").decode()   # Gradescope installs lrpkit
        assert tests == sorted(f"tests/{name}.py" for name, e in teaching.EXERCISES.items() if e.part == part)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)   # no temporary left


def test_existing_zips_are_kept_without_force(tmp_path, capsys):
    existing = tmp_path / autograder.autograder_name(1)
    existing.write_text("an instructor's own autograder")
    assert teaching.main(["autograder", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists; pass --force" in err and "\n" not in err
    assert existing.read_text() == "an instructor's own autograder"
    assert [p.name for p in tmp_path.iterdir()] == [existing.name]            # nothing else written either
    assert teaching.main(["autograder", "--out", str(tmp_path), "--part", "1", "--force"]) == 0
    assert zipfile.is_zipfile(existing)


def test_autograder_errors_name_the_problem(tmp_path, capsys):
    assert teaching.main(["autograder", "--out", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a folder" in err and "\n" not in err
    with pytest.raises(ValueError, match="unknown part 9"):
        autograder.write_autograders(tmp_path, parts=[9])
