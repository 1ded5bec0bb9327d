"""Multilingual workbench: hook-based analyses of how language models handle many languages.

The package is a thin layer over TransformerLens. Every analysis is a set of hook functions on the
model (a ``HookedTransformer``, or a ``TransformerBridge`` for architectures it cannot convert);
results are plain data classes that save and load themselves.

The names a notebook needs are here; each loads on first use, so ``import workbench`` is instant::

    import workbench as wb
    from workbench.analyses import plnd

    model = wb.load_model("gemma-3-270m")
    corpus = wb.BibleCorpus()
    store = wb.Store.memory(["en", "de", "zh"])          # or wb.Store.open("results/demo")
    sets = plnd.run(model, corpus, plnd.Options(documents=16), store).sets

The analyses are the slices of [`workbench.analyses`][workbench.analyses], each with its
``Options``, ``run``, ``Result``, ``figures`` and ``section``. Its ``REGISTRY`` holds them in run
order: ``loss``, ``lens``, ``probe``, ``plnd``, ``ablate``, ``finetune``, ``ffn``, ``clt-train``,
``clt-features``, ``clt-steer``, ``clt-graph``, ``clt-diff``, ``clt-study``
(``tests/test_architecture.py`` checks this list against the registry).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS: dict[str, str] = {
    "load_model": "workbench.models.loading",
    "model_source": "workbench.models.model",
    "BibleCorpus": "workbench.data.corpora.bible",
    "TextCorpus": "workbench.data.corpora.text_files",
    "open_corpus": "workbench.data.corpus",
    "tokenize": "workbench.data.batching",
    "NeuronSet": "workbench.neurons.sets",
    "switched_off": "workbench.neurons.masking",
    "logit_lens": "workbench.lens.logit_lens",
    "vocab_languages": "workbench.language.vocabulary",
    "default_classifier": "workbench.language.classifier",
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

if TYPE_CHECKING:  # the type checker and editors see what __getattr__ loads on first use
    from workbench.data.batching import tokenize
    from workbench.data.corpora.bible import BibleCorpus
    from workbench.data.corpora.text_files import TextCorpus
    from workbench.data.corpus import open_corpus
    from workbench.interventions.finetune import NeuronDelta, train_neurons
    from workbench.interventions.measures import Measures, measure, random_like
    from workbench.language.classifier import default_classifier
    from workbench.language.vocabulary import vocab_languages
    from workbench.lens.layer_language import token_categories
    from workbench.lens.logit_lens import logit_lens
    from workbench.models.loading import load_model
    from workbench.models.model import model_source
    from workbench.neurons.masking import switched_off
    from workbench.neurons.sets import NeuronSet
    from workbench.runs.job import run
    from workbench.runs.options import RunOptions
    from workbench.runs.report import collect_figures, write_report
    from workbench.runs.store import Store

    __version__: str

__all__ = [
    "__version__",
    "analyses",
    "load_model",
    "model_source",
    "BibleCorpus",
    "TextCorpus",
    "open_corpus",
    "tokenize",
    "NeuronSet",
    "switched_off",
    "logit_lens",
    "vocab_languages",
    "default_classifier",
    "token_categories",
    "measure",
    "Measures",
    "random_like",
    "train_neurons",
    "NeuronDelta",
    "Store",
    "RunOptions",
    "run",
    "write_report",
    "collect_figures",
]  # _EXPORTS' names (a test holds them equal)

# The analyses register their slices with the run machinery (light: their options, no torch).
from workbench import analyses  # noqa: E402


def __getattr__(name: str):
    if name == "__version__":
        from workbench.runs.results import workbench_version

        return workbench_version()
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
