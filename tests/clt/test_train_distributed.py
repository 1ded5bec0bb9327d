"""Data-parallel transcoder training: two CPU processes with gloo under ``torchrun`` train the
transcoder one process trains.

The clt-train slice runs twice on a tiny model (``workbench run``, the path users take), once in
one process and once as two ranks that split each block's forward and each batch's rows and
all-reduce the gradients. The saved transcoders must agree parameter for parameter and the
training logs step for step, within float rounding (activations read in other padded batches,
gradients summed in another order): after 40 Adam steps every parameter is within 3e-7 of its
tensor's largest entry, and each logged number within 3e-7 of itself (measured; the tolerances
leave a margin of about 7). Gradients left un-averaged miss by 40 % of a tensor's largest entry.
The parameters must also have moved from their seeded start, so a run that trained nothing fails.
The same runs steer and draw graphs, their pairs and prompts shared out over the two processes.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.clt.graphs.graph import Graph
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.runs.results import load_json

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BATCH, STEPS = 64, 40
JOB = [
    "-m",
    "workbench.cli",
    "run",
    "--analyses",
    "clt-train,clt-steer,clt-graph",
    "--model",
    "tiny-gated",
    "--languages",
    "en,de",
    "--clt-features-documents",
    "4",
    "--clt-features-identity",
    "2",
    "--clt-features-cards",
    "1",
    "--clt-features-contexts",
    "1",
    "--clt-steer-prompts",
    "2",
    "--clt-steer-prompt-tokens",
    "6",
    "--clt-steer-new-tokens",
    "2",
    "--clt-steer-features",
    "1",
    "--clt-steer-strengths",
    "0,4",
    "--clt-graph-tasks",
    "weekday",
    "--clt-graph-max-features",
    "32",
    "--clt-graph-batch",
    "8",
    "--clt-train-features",
    "32",
    "--clt-train-documents",
    "12",
    "--clt-train-block-documents",
    "7",
    "--clt-train-tokens",
    str(BATCH * STEPS),
    "--clt-train-batch",
    str(BATCH),
    "--clt-train-lr",
    "3e-3",
    "--clt-train-sparsity",
    "1e-2",
    "--clt-train-heldout",
    "2",
    "--batch-tokens",
    "256",
    "--quiet",
]
SPREAD = 2e-6  # a parameter's tolerance, as a share of its tensor's largest entry (measured: 3e-7)
RTOL = 2e-6  # a logged number's relative tolerance (measured: 2.4e-7)


def _run(command: list[str], tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": path,
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """The clt-train part folders of a one-process and a two-process run."""
    tmp_path = tmp_path_factory.mktemp("clt-distributed")
    _run([sys.executable, *JOB, "--out", "single"], tmp_path)
    _run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", *JOB, "--out", "two"], tmp_path)
    (single,) = (tmp_path / "single" / "parts").glob("clt-train-*")
    (two,) = (tmp_path / "two" / "parts").glob("clt-train-*")
    return single, two


def test_two_gloo_processes_share_the_steering_pairs_and_graphs_and_agree(runs):
    """Steering pairs and graphs are shared out over the processes (one per process per round)
    and gathered: the same rows and graphs as one process (the transcoders differ by rounding)."""
    single, two = (folder.parents[1] for folder in runs)
    steer = [load_json(folder / "clt-steer.json")["rows"] for folder in (single, two)]
    assert len(steer[0]) == len(steer[1]) > 0
    for one, other in zip(*steer):
        assert {k: v for k, v in one.items() if "mass" not in k} == {k: v for k, v in other.items() if "mass" not in k}
        np.testing.assert_allclose(
            [one["mass_target"], one["mass_source"]], [other["mass_target"], other["mass_source"]], atol=1e-4
        )
    graphs = [sorted((folder / "parts").glob("clt-graph-*/graphs/*")) for folder in (single, two)]
    assert [g.name for g in graphs[0]] == [g.name for g in graphs[1]] and len(graphs[0]) >= 2
    for one, other in zip(*graphs):
        a, b = (Graph.load(path) for path in (one, other))
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_allclose(a.adjacency, b.adjacency, atol=1e-4 * float(np.abs(a.adjacency).max()))


def test_two_gloo_processes_train_the_single_process_transcoder(runs):
    single, two = (CrossLayerTranscoder.load(folder / "transcoder") for folder in runs)
    assert single.config == two.config
    start = CrossLayerTranscoder(single.config, seed=0).state_dict()  # the run's seed: the default 0
    for name, one in single.state_dict().items():
        merged = two.state_dict()[name]
        atol = SPREAD * float(one.abs().max())
        torch.testing.assert_close(merged, one, rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")
        if name not in ("in_scale", "out_scale"):
            assert not torch.equal(one, start[name]), f"{name} never moved: nothing was trained"


def test_two_gloo_processes_log_the_single_process_training(runs):
    single, two = (load_json(folder / "training.json") for folder in runs)
    assert single["steps"] == two["steps"] == STEPS and single["rows"] == two["rows"] == BATCH * STEPS
    assert [entry["step"] for entry in two["log"]] == [entry["step"] for entry in single["log"]]
    for name in ("mse", "sparsity", "dead", "l0", "lambda"):
        found, expected = ([entry[name] for entry in run["log"]] for run in (two, single))
        np.testing.assert_allclose(found, expected, rtol=RTOL, err_msg=name)
    mse = [entry["mse"] for entry in single["log"]]
    assert sum(mse[-5:]) < sum(mse[:5])  # it learned


def test_the_two_process_run_checkpoints_its_finished_state(runs):
    """Rank 0 wrote the checkpoint (a resume reads it on every rank): the finished run's state."""
    saved = torch.load(runs[1] / "checkpoint" / "checkpoint.pt", weights_only=True)
    assert saved["state"]["step"] == STEPS and len(saved["state"]["log"]) == STEPS
