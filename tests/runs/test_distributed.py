"""Data-parallel runs: two CPU processes with gloo under ``torchrun`` give what one process gives.

The job (loss, lens, PLND with LAPE, FFN statistics) runs twice on a tiny model and the Bible corpus, once in one
process and once as two ranks; per-document losses, the lens readout, the per-language PLND/LAPE
summaries and the neuron sets must agree (sums within float rounding: the same numbers added in
another order, or computed in other batches; minima, worst ranks and counts exactly).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.neurons.plnd_sets import PLNDResult
from workbench.neurons.plnd_summary import ImportanceSummary
from workbench.runs import distributed
from workbench.runs.results import load_json

BIN = Path(sys.executable).parent
JOB = [
    "run",
    "--analyses",
    "loss,lens,plnd,ffn",
    "--model",
    "tiny-gated",
    "--languages",
    "en,de,zh",
    "--loss-documents",
    "5",
    "--lens-documents",
    "3",
    "--plnd-documents",
    "7",
    "--plnd-value",
    "0.05",
    "--ffn-documents",
    "5",
]


def _run(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("distributed")
    _run([str(BIN / "workbench"), *JOB, "--out", "single"], tmp_path)
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", str(BIN / "workbench")]
    _run([*torchrun, *JOB, "--out", "two"], tmp_path)
    return tmp_path / "single", tmp_path / "two"


def _summaries(folder: Path) -> dict[str, ImportanceSummary]:
    (parts,) = (folder / "parts").glob("plnd-*")
    return {path.stem: ImportanceSummary.load(path) for path in sorted(parts.glob("*.safetensors"))}


def test_two_gloo_processes_merge_to_the_single_process_summaries(runs):
    single, two = (_summaries(folder) for folder in runs)
    assert single.keys() == two.keys() == {"en", "de", "zh"}
    for language, one in single.items():
        merged = two[language]
        assert (merged.ids, merged.n_tokens) == (one.ids, one.n_tokens)
        for structure in one.total:
            np.testing.assert_allclose(merged.total[structure], one.total[structure], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(merged.minimum[structure], one.minimum[structure], rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(merged.worst_rank[structure], one.worst_rank[structure])
            np.testing.assert_array_equal(merged.count_halves[structure], one.count_halves[structure])
        np.testing.assert_array_equal(merged.positive, one.positive)


def test_two_gloo_processes_find_the_same_neuron_sets(runs):
    single, two = (PLNDResult.load(folder) for folder in runs)
    assert single.sets.keys() == two.sets.keys()
    for language in single.sets:
        assert single.sets[language].to_dict() == two.sets[language].to_dict()
        assert single.lape[language].to_dict() == two.lape[language].to_dict()
    assert (runs[1] / "report.html").exists()


def test_two_gloo_processes_give_the_single_process_losses_and_lens(runs):
    single, two = (load_json(folder / "loss.json") for folder in runs)
    for language, one in single["languages"].items():
        merged = two["languages"][language]
        assert (merged["ids"], merged["n_predicted"]) == (one["ids"], one["n_predicted"])
        np.testing.assert_allclose(merged["loss_sum"], one["loss_sum"], rtol=1e-5)
    single, two = (load_json(folder / "lens.json") for folder in runs)
    assert single.keys() == two.keys()
    for language, one in single["languages"].items():
        merged = two["languages"][language]
        assert (merged["counts"], merged["n_positions"]) == (one["counts"], one["n_positions"])
        for name in ("mass_english", "mass_input", "entropy", "final_top_prob"):
            np.testing.assert_allclose(merged[name], one[name], rtol=1e-4, atol=1e-6)


def test_two_gloo_processes_give_the_single_process_ffn_statistics(runs):
    single, two = (load_json(folder / "ffn.json") for folder in runs)
    _assert_close(two, single)


def _assert_close(found, expected, path="ffn"):
    """Nested JSON equal, numbers within float rounding (sums added in another order)."""
    if isinstance(expected, dict):
        assert found.keys() == expected.keys(), path
        for key in expected:
            _assert_close(found[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list) and expected and not isinstance(expected[0], (int, float, type(None))):
        assert len(found) == len(expected), path
        for i, (a, b) in enumerate(zip(found, expected)):
            _assert_close(a, b, f"{path}[{i}]")
    elif isinstance(expected, (float, list)):
        np.testing.assert_allclose(
            np.array(found, dtype=float), np.array(expected, dtype=float), rtol=1e-4, atol=1e-6, err_msg=path
        )
    else:
        assert found == expected, path


def test_a_world_of_one_changes_nothing():
    assert distributed.world() == distributed.World(0, 1)
    assert distributed.shard(5) == [0, 1, 2, 3, 4]
    assert distributed.gather_in_order(["a", "b"], 2) == ["a", "b"]
    assert distributed.from_main(lambda: 3) == 3
