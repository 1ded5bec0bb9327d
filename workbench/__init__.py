"""Multilingual workbench: hook-based analyses of how language models handle many languages.

The package is a thin layer over TransformerLens. Every analysis is a set of hook functions on a
``HookedTransformer``; results are plain data classes that save and load themselves.

The names a notebook needs are here; each loads on first use, so ``import workbench`` is instant::

    import workbench as wb
    from workbench.analyses import plnd

    model = wb.load_model("gemma-3-270m")
    corpus = wb.BibleCorpus()
    store = wb.Store.memory(["en", "de", "zh"])          # or wb.Store.open("results/demo")
    sets = plnd.run(model, corpus, plnd.Options(documents=16), store).sets

The analyses (``loss``, ``lens``, ``plnd``, ``ablate``, ``finetune``, ``ffn``) live in
[`workbench.analyses`][workbench.analyses], each with its ``Options``, ``run``, ``Result``, ``figures`` and ``section``.
"""

from __future__ import annotations

import importlib

_EXPORTS: dict[str, str] = {
    "load_model": "workbench.models.loading",
    "model_source": "workbench.models.model",
    "BibleCorpus": "workbench.data.corpus",
    "TextCorpus": "workbench.data.corpus",
    "open_corpus": "workbench.data.corpus",
    "tokenize": "workbench.data.batching",
    "NeuronSet": "workbench.neurons.sets",
    "switched_off": "workbench.neurons.masking",
    "logit_lens": "workbench.lens.logit_lens",
    "vocab_languages": "workbench.language.langid",
    "default_classifier": "workbench.language.langid",
    "token_categories": "workbench.lens.layer_language",
    "measure": "workbench.interventions.measures",
    "Measures": "workbench.interventions.measures",
    "random_like": "workbench.interventions.measures",
    "train_neurons": "workbench.interventions.finetune",
    "NeuronDelta": "workbench.interventions.finetune",
    "Store": "workbench.runs.store",
    "RunOptions": "workbench.runs.options",
    "run": "workbench.runs.job",
    "write_report": "workbench.runs.report",
    "collect_figures": "workbench.runs.report",
}

__all__ = ["__version__", "analyses", *_EXPORTS]

# The analyses register their slices with the run machinery (light: their options, no torch).
from workbench import analyses  # noqa: E402


def __getattr__(name: str):
    if name == "__version__":
        from workbench.runs.results import workbench_version

        return workbench_version()
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
