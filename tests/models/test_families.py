"""The model coverage matrix: every family a researcher may bring, as a tiny random Hugging Face
model saved to a folder (its own config class, its quirks on, a real tokenizer) and loaded with
the public ``--model FOLDER`` route. On each family:

* it loads as a ``HookedTransformer`` whose log-probabilities equal the HF model's;
* PLND's parallel importances equal zeroing each neuron and rerunning the sublayer, for all five
  structures (Q and K through softcaps, sliding windows, ALiBi, q/k norms, parallel attention);
* every analysis runs as one job (loss to clt-diff) and writes its result and the report;
* an attribution graph on the job's transcoder is complete: each node's value is its bias plus
  its incoming direct effects.

What each family measured is written to ``build/model-coverage.json`` (the README's model table
and the closing notes quote it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.analyses import (
    REGISTRY,
    ablate,
    clt_diff,
    clt_features,
    clt_graph,
    clt_steer,
    clt_study,
    clt_train,
    ffn,
    finetune,
    lens,
    loss,
    plnd,
    probe,
)
from workbench.clt.graphs.attribution import attribute, completeness_error
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.batching import Batch
from workbench.models.families import FAMILIES, save_family
from workbench.models.loading import load_model
from workbench.models.model import source_of
from workbench.neurons.importance import batch_importance
from workbench.neurons.plnd_reference import attention_reference, ffn_reference
from workbench.neurons.sets import STRUCTURES
from workbench.runs.job import run
from workbench.runs.options import RunOptions

TEXT = "In the beginning God created the heaven and the earth. Au commencement, Dieu créa les cieux."
PROMPT = "Im Anfang schuf Gott Himmel und Erde"
COVERAGE = Path(__file__).resolve().parents[2] / "build" / "model-coverage.json"
SMALL = {
    "loss": loss.Options(documents=2),
    "lens": lens.Options(documents=2, per_document=2, accuracy_documents=4),
    "probe": probe.Options(documents=4, heldout=2, tokens=60, steps=10),
    "plnd": plnd.Options(documents=4, value=0.1, specificity=0.5),  # tiny layers: the top 10%, half the documents
    "ablate": ablate.Options(documents=2, prompt_tokens=4, new_tokens=2),
    "finetune": finetune.Options(sizes=(4,), random_size=0, documents=2, epochs=1),
    "ffn": ffn.Options(documents=4),
    "clt-train": clt_train.Options(features=16, documents=6, tokens=600, batch=128, heldout=2, block_documents=18),
    "clt-features": clt_features.Options(documents=4, identity=2, cards=1, contexts=1),
    "clt-steer": clt_steer.Options(
        prompts=2, prompt_tokens=6, new_tokens=2, features=1, strengths=(0.0, 4.0), targets=("de",)
    ),
    "clt-graph": clt_graph.Options(tasks=("weekday",), max_features=32, batch=8),
    "clt-study": clt_study.Options(),
}


@pytest.fixture(scope="module")
def coverage():
    """Per family, what the tests measured; written once all families ran."""
    found: dict[str, dict] = {}
    yield found
    if found:
        COVERAGE.parent.mkdir(exist_ok=True)
        old = json.loads(COVERAGE.read_text()) if COVERAGE.exists() else {}
        COVERAGE.write_text(json.dumps({**old, **found}, indent=2))


def _plnd_literal_error(model) -> float:
    """The largest relative difference between the parallel importances and the literal ones,
    over every neuron of every layer and structure, on one document."""
    tokens = model.to_tokens(TEXT)
    fast = batch_importance(model, Batch([0], tokens, torch.ones_like(tokens)), STRUCTURES)
    worst = 0.0
    for layer in range(model.cfg.n_layers):
        for structure in STRUCTURES:
            size = fast.importance[structure].shape[-1]
            if structure == "ffn":
                literal = ffn_reference(model, tokens, layer, range(size))
            else:
                literal = attention_reference(model, tokens, layer, structure, range(size))
            ours = fast.importance[structure][0, layer].double().numpy()
            theirs = np.array([literal[k] for k in range(size)])
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=f"{structure} layer {layer}")
            assert theirs.max() > 0, f"{structure} layer {layer}: zeroing changed nothing"
            worst = max(worst, float(np.abs(ours - theirs).max() / theirs.max()))
    return worst


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_analysis_runs_exactly_on_the_family(name, tmp_path, coverage):
    folder = tmp_path / "model"
    hf = save_family(name, folder)
    model = load_model(str(folder))
    assert source_of(model).route == "local-folder" and type(model).__name__ == "HookedTransformer"
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        logit_error = (model(tokens).log_softmax(-1) - hf(tokens).logits.log_softmax(-1)).abs().max().item()
    assert logit_error < 1e-4
    plnd_error = _plnd_literal_error(model)

    out = tmp_path / "run"
    analyses = {
        **SMALL,
        "clt-diff": clt_diff.Options(tuned=str(folder), documents=4, top=2, identity=1, contexts=1, task="weekday"),
    }
    run(RunOptions(model=str(folder), languages=("en", "de")), analyses, out, show_progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["analyses"]) == set(REGISTRY)  # not one skipped
    assert (out / "report.html").stat().st_size > 100_000

    (saved,) = out.glob("parts/clt-train-*/transcoder")
    clt = CrossLayerTranscoder.load(saved)
    graph = attribute(model, clt, model.to_tokens(PROMPT)[0], max_logits=3, batch=16)
    graph_error = completeness_error(model, clt, graph)
    assert graph.n_features > 0 and graph_error < 1e-4
    coverage[name] = {
        "architecture": model.cfg.original_architecture,
        "route": "HookedTransformer",
        "quirks": FAMILIES[name].quirks,
        "logit_error": logit_error,
        "plnd_literal_error": plnd_error,
        "graph_completeness_error": graph_error,
        "graph_features": graph.n_features,
    }
