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
:mod:`workbench.analyses`, each with its ``Options``, ``run``, ``Result``, ``figures`` and ``section``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("multilingual-workbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

_EXPORTS: dict[str, str] = {
    "load_model": "workbench.models",
    "model_source": "workbench.models",
    "BibleCorpus": "workbench.corpus",
    "TextCorpus": "workbench.corpus",
    "open_corpus": "workbench.corpus",
    "tokenize": "workbench.batching",
    "NeuronSet": "workbench.neurons",
    "switched_off": "workbench.masking",
    "logit_lens": "workbench.lens",
    "vocab_languages": "workbench.langid",
    "default_classifier": "workbench.langid",
    "token_categories": "workbench.layer_language",
    "measure": "workbench.measures",
    "Measures": "workbench.measures",
    "random_like": "workbench.measures",
    "train_neurons": "workbench.finetune",
    "NeuronDelta": "workbench.finetune",
    "Store": "workbench.store",
    "RunOptions": "workbench.options",
    "run": "workbench.job",
    "write_report": "workbench.report",
    "collect_figures": "workbench.report",
}

__all__ = ["__version__", "analyses", *_EXPORTS]


def __getattr__(name: str):
    if name == "analyses":
        return importlib.import_module("workbench.analyses")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
