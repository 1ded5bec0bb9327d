"""The study summary's findings against hand-made numbers: each claim holds, fails or cannot be
measured exactly where the numbers say so; and the summary survives saving."""

from __future__ import annotations

import math

from workbench.analyses.clt_study.analysis import Result, findings, verdict
from workbench.analyses.clt_study.changes import changes_figure, faithfulness_table, verdict_table
from workbench.runs.report import Table


def _result(**changes) -> Result:
    numbers = dict(
        model="m",
        languages=["en", "de"],
        n_layers=9,
        layers=[0, 2, 4, 6, 8],
        fvu=[0.1] * 5,
        l0=[20.0] * 5,
        loss={"en": [3.0, 3.5]},
        multilingual=[1, 5, 9, 4, 2],
        specific=[3, 1, 0, 2, 8],
        identity=[
            {"language": "en", "feature": "L8/3", "layer": 8, "frequency": 0.9, "other": 0.01},
            {"language": "de", "feature": "L7/1", "layer": 7, "frequency": 0.8, "other": 0.02},
            {"language": "de", "feature": "L0/5", "layer": 0, "frequency": 0.5, "other": 0.1},
        ],
        jaccard=[0.0, 0.2, 0.4, 0.3, 0.1],
        graphs={"graphs": 4, "replacement": 0.8, "completeness": 0.95, "answers": 4, "answers_top": 1},
        steering=[
            {"source": "en", "target": "de", "strength": 4.0, "identity": 0.9, "control": 0.1, "works": True},
            {"source": "de", "target": "en", "strength": 4.0, "identity": 0.7, "control": 0.2, "works": True},
        ],
    )
    numbers.update(changes)
    result = Result(**numbers)
    result.findings = findings(result)
    return result


def test_the_papers_shape_holds_every_claim():
    result = _result()
    assert [f.holds for f in result.findings] == [True, True, True, True, True]
    assert verdict(result).startswith("m bears out 5 of the paper's 5 claims")
    assert "en L8/3 (90% of its tokens, at most 1% of another's)" in result.findings[2].evidence


def test_each_claim_fails_on_its_own_numbers():
    result = _result(
        multilingual=[9, 5, 1, 0, 0],
        specific=[8, 1, 0, 0, 0],
        jaccard=[0.5, 0.2, 0.1, 0.0, 0.0],
        identity=[{"language": "en", "feature": "L0/3", "layer": 0, "frequency": 0.9, "other": 0.0}],
        steering=[{"source": "en", "target": "de", "strength": 4.0, "identity": 0.2, "control": 0.2, "works": False}],
    )
    assert [f.holds for f in result.findings] == [False, False, False, False, False]


def test_claims_without_numbers_are_not_measured_and_the_summary_round_trips(tmp_path):
    result = _result(
        layers=[0, 1],
        n_layers=2,
        fvu=[0.1] * 2,
        l0=[1.0] * 2,
        multilingual=[0, 0],
        specific=[0, 0],
        identity=[],
        jaccard=[math.nan, math.nan],
        steering=[],
    )
    assert [f.holds for f in result.findings] == [None, None, None, None, None]
    result.save(tmp_path)
    again = Result.load(tmp_path)
    assert again.findings == result.findings and again.layers == [0, 1] and math.isnan(again.jaccard[0])


PROBE = {
    "points": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    "accuracy": [0.8] + [0.97] * 9,
    "shared": [0.4, 0.7, 0.93, 0.95, 0.96, 0.96, 0.95, 0.94, 0.9, 0.85],
    "baselines": {"majority": 0.5, "token": 0.8, "token_shared": 0.45, "shared_share": 0.3},
    "threshold": 0.9,
    "readable_from": 2,
}
DIFF = {
    "target": "de",
    "layers": [0, 2, 4, 6, 8],
    "own": [0.0, 0.01, 0.02, 0.05, 0.03],
    "others": [0.0, 0.0, -0.01, 0.01, 0.0],
}


def test_the_probe_and_diff_claims_hold_fail_and_are_absent_by_their_numbers(tmp_path):
    result = _result(probe=PROBE, diff=DIFF)
    assert [f.holds for f in result.findings] == [True] * 7
    assert "reaches 90% at point 2 (early: up to point 3)" in result.findings[5].evidence
    assert "most in layer 6" in result.findings[6].evidence and result.findings[6].claim.startswith("Fine-tuning de's")
    late = _result(probe={**PROBE, "readable_from": 5}, diff={**DIFF, "others": [0.1] * 5})
    assert [f.holds for f in late.findings[5:]] == [False, False]
    never = _result(probe={**PROBE, "readable_from": None}, diff={**DIFF, "own": [-0.01] * 5, "others": [-0.02] * 5})
    assert [f.holds for f in never.findings[5:]] == [False, False] and "nowhere" in never.findings[5].evidence
    assert len(_result().findings) == 5  # without a probe or a diff in the run: not asked
    gap = _result(probe=PROBE, diff={**DIFF, "own": [0.0, None, 0.02, 0.05, 0.03]})  # as a saved NaN loads
    assert gap.findings[6].holds and "0.0000, -, 0.0200" in gap.findings[6].evidence
    result.save(tmp_path)
    again = Result.load(tmp_path)
    assert again.probe == PROBE and findings(again) == result.findings


def test_studies_side_by_side_show_which_verdicts_moved():
    before = _result(fvu=[0.6] * 5, multilingual=[9, 5, 1, 0, 0], loss={"en": [3.0, 9.0], "de": [3.2, 7.2]})
    after = _result(steering=[])
    rows = verdict_table({"before": before, "after": after})
    assert [r["claim"] for r in rows] == [f.claim for f in before.findings]
    assert (rows[0]["before"], rows[0]["after"]) == ("does not hold", "holds")
    assert (rows[4]["before"], rows[4]["after"]) == ("holds", "not measurable")
    shown = Table(rows)._repr_html_()  # what a notebook displays
    assert shown.count("<tr>") == len(rows) + 1 and "<th>before</th>" in shown and "does not hold" in shown
    assert verdict_table({"after": after, "probe": _result(probe=PROBE)})[-1]["after"] == "not asked"
    first, second = faithfulness_table({"before": before, "after": after})
    assert first["worst FVU (max over layers)"] == 0.6 and second["worst FVU (max over layers)"] == 0.1
    assert (first["extra loss, best language"], first["extra loss, worst language"]) == (4.0, 6.0)
    assert (first["steering pairs that work"], second["steering pairs"]) == (2, 0)
    assert len(changes_figure({"before": before, "after": after}).data) == 6
