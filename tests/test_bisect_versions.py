"""`fitbench bisect --package`: the search over a dependency's released versions, each step a versions
comparison. The comparisons here are stand-ins with the shape `fitbench versions` writes (its statistics have
their own tests); the search, the step answers, the document and the bad input are what is tested."""

from __future__ import annotations

import json

import pytest

from fitbench import schema
from fitbench.errors import UsageError
from fitbench.versions.bisect import bisect_package, version_range
from fitbench.versions.compare import VersionsSettings

RELEASES = ["1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.4.0", "1.5.0", "1.6.0"]
CELLS = ("tensorflow functional jit=on plain cpu batch 256", "jax functional jit=on plain cpu batch 256")


def fake_versions(slower_from: str | None, unsure: set[str] = frozenset(), calls: list | None = None):
    """A `fitbench versions GOOD,CANDIDATE` stand-in: the first cell 15 % slower from `slower_from` on, the
    second never; `unsure` versions come back inconclusive."""
    def measure(good: str, candidate: str) -> dict:
        if calls is not None:
            calls.append(candidate)
        ref, col = f"keras=={good}", f"keras=={candidate}"
        slow = slower_from is not None and RELEASES.index(candidate) >= RELEASES.index(slower_from)
        rows = []
        for k, cell in enumerate(CELLS):
            if candidate in unsure:
                verdict, ratio, low, high = "inconclusive", 0.95, 0.80, 1.08
            elif slow and k == 0:
                verdict, ratio, low, high = "slower", 0.87, 0.84, 0.90
            else:
                verdict, ratio, low, high = "equivalent", 1.0, 0.97, 1.03
            rows.append({"cell": cell, "step_time_s": {ref: [0.01] * 6, col: [0.01] * 6},
                         "comparisons": [{"column": col, "reference": ref, "speed_ratio": ratio, "ci_low": low,
                                          "ci_high": high, "verdict": verdict, "processes": [6, 6]}]})
        return {"command": "versions", "cells": rows}
    return measure


def run(tmp_path, good: str, bad: str, measure) -> tuple:
    doc = bisect_package("keras", good, bad, str(tmp_path / "out"), VersionsSettings(), measure=measure,
                         released=RELEASES)
    return doc, json.loads((tmp_path / "out" / "bisect.json").read_text()), (tmp_path / "out" / "bisect.md").read_text()


def test_the_first_slower_release_is_named_with_its_ratio_in_few_steps(tmp_path):
    calls: list[str] = []
    doc, written, md = run(tmp_path, "1.0.0", "1.6.0", fake_versions("1.3.0", calls=calls))
    schema.validate(written)
    assert doc.exit_status == 1 and doc.culprit == "1.3.0" and written["package"] == "keras"
    assert doc.watched == [CELLS[0]]  # the cell slower at BAD; the other is not searched for
    assert calls[0] == "1.6.0" and len(calls) <= 1 + 3  # step 0, then log2(8) steps at most
    assert doc.commits_measured == len(set(calls) - {"1.6.0"})
    [cell] = doc.culprit_evidence
    assert cell.change == "worse" and cell.ratio == pytest.approx(1 / 0.87) and cell.ci_low < cell.ratio < cell.ci_high
    assert md.startswith("**culprit: keras 1.3.0**") and "1.2.1, the one before, is not" in md
    assert all((tmp_path / "out" / s.report).exists() for s in doc.steps)


def test_a_range_without_a_slower_release_names_none_after_one_step(tmp_path):
    doc, written, _ = run(tmp_path, "1.0.0", "1.6.0", fake_versions(None))
    assert (doc.exit_status, doc.culprit, len(doc.steps)) == (0, None, 1)
    assert "holds no regression" in doc.note


def test_a_step_that_cannot_tell_stops_the_search_and_says_what_is_left(tmp_path):
    doc, written, _ = run(tmp_path, "1.0.0", "1.6.0", fake_versions("1.3.0", unsure={"1.2.1"}))
    assert doc.exit_status == 3 and doc.culprit is None and doc.verdict == "undecided"
    assert doc.range_left is not None and doc.range_left[1] in RELEASES
    assert doc.steps[-1].answer == "unknown"


@pytest.mark.parametrize("good, bad, message", [
    ("1.0.0", "9.9.9", "keras 9.9.9 is not a released version"),
    ("1.6.0", "1.0.0", "must be an older release"),
    ("1.5.0", "1.6.0", "holds one release"),
    ("one", "1.6.0", "'one' is not a version number"),
])
def test_bad_version_ranges_are_one_line(good, bad, message):
    with pytest.raises(UsageError, match=message):
        version_range("keras", RELEASES, good, bad)


def test_the_cli_refuses_commit_flags_with_package_and_package_flags_without(capsys, tmp_path, monkeypatch):
    from fitbench import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["bisect", "--package", "keras", "3.13.0", "3.15.1", "--bench", "x"]) == 2
    assert "--bench is for a bisection over commits" in capsys.readouterr().err
    assert cli.main(["bisect", "--package", "keras", "3.13.0", "3.15.1", "--equivalence-alpha", "0.1"]) == 2
    assert "--equivalence-alpha does not go with --package" in capsys.readouterr().err
    assert cli.main(["bisect", "--package", "keras", "3.13.0", "3.15.1", "--processes", "3"]) == 2
    assert "--processes 3: with 3 a side the exact test can decide nothing" in capsys.readouterr().err
    assert cli.main(["bisect", "a", "b", "--batch-sizes", "32"]) == 2
    assert "--batch-sizes goes with --package" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_package_bisection_takes_the_users_factory_and_data_to_every_step(tmp_path, monkeypatch):
    """`bisect --package keras GOOD BAD --model pkg.mod:build --data d.npz`: the factory is checked once per Keras
    (here a stand-in: the real check starts a framework process) and every step's versions run gets it."""
    import numpy as np

    from fitbench import cli
    from fitbench.models import check
    from fitbench.versions import bisect as package_bisect

    (tmp_path / "mymodels.py").write_text("def build():\n    return None\n")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3)), y=np.zeros((4, 1)))
    monkeypatch.chdir(tmp_path)
    checked, seen = [], {}
    monkeypatch.setattr(check, "check_in_child", lambda choice, stack, *a: checked.append((choice.source, stack)))

    real = package_bisect.bisect_package

    def fake_bisect(package, good, bad, out, settings, **kw):
        seen.update(settings=settings)
        return real(package, good, bad, out, settings, measure=fake_versions(None),
                                             released=RELEASES)

    monkeypatch.setattr(package_bisect, "bisect_package", fake_bisect)
    status = cli.main(["bisect", "--package", "keras", "1.0.0", "1.6.0", "--model", "mymodels:build", "--data",
                       "d.npz", "--backend", "tensorflow,tf-keras", "--out", str(tmp_path / "out")])
    assert status == 0
    assert checked == [("mymodels:build", "tensorflow"), ("mymodels:build", "tf-keras")]
    settings = seen["settings"]
    assert (settings.model, settings.data, settings.apis) == ("mymodels:build", str(tmp_path / "d.npz"), "factory")
    arguments = settings.run_arguments()
    assert arguments[arguments.index("--model") + 1] == "mymodels:build"
    assert arguments[arguments.index("--data") + 1] == str(tmp_path / "d.npz")
    assert arguments[arguments.index("--api") + 1] == "factory"
    assert cli.main(["bisect", "a", "b", "--model", "mymodels:build"]) == 2  # commits: asv-init's models
