"""A transcoder measured per language of a run, each language's numbers kept as a part.

Quality per layer, the replacement model's loss and the feature statistics are measured one
language at a time on that language's documents; each finished language is saved at once under
the analysis's parts (``key(lang)`` names the file) and reused by a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int

from workbench.clt.features.stats import FeatureStats, feature_stats
from workbench.clt.quality import LayerQuality, layer_quality, replacement_losses
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.models.model import Model
from workbench.runs.store import Store

Documents = dict[str, list[Int[torch.Tensor, " pos"]]]
"""Per language, token lists (BOS first)."""


@dataclass
class QualityRows:
    """One language's quality per covered layer, as the part saves it."""

    rows: list[LayerQuality]


@dataclass
class Replacement:
    """Next-token loss (nats) of the original model and of the model with every MLP replaced.

    Attributes:
        original: The model's.
        replacement: Every covered MLP replaced at every position but BOS.
        with_bos: Replaced at BOS too (NaN in results made before it was measured).
    """

    original: float
    replacement: float
    with_bos: float = float("nan")


def quality_per_language(
    store: Store,
    analysis: str,
    key: Callable[[str], str],
    model: Model,
    clt: CrossLayerTranscoder,
    documents: Documents,
) -> dict[str, list[LayerQuality]]:
    """Per language of the run, ``clt``'s quality per covered layer on its documents (FVU, L0, dead share).

    Args:
        store: The run's store, which keeps each language's rows as the JSON part ``key(lang)``.
        analysis: The analysis whose parts they are.
        key: The part's file name for a language.
        model: The model the transcoder reads.
        clt: The transcoder.
        documents: Per language, the documents it is measured on.
    """
    return {
        lang: store.reuse_json(
            analysis,
            key(lang),
            lambda: QualityRows(layer_quality(model, clt, documents[lang], store.run.batch_tokens)),
            QualityRows,
        ).rows
        for lang in store.languages
    }


def loss_per_language(
    store: Store,
    analysis: str,
    key: Callable[[str], str],
    model: Model,
    clt: CrossLayerTranscoder,
    documents: Documents,
) -> dict[str, Replacement]:
    """Per language of the run, the next-token loss of the model and of its replacement by ``clt``.

    The arguments are [`quality_per_language`][workbench.clt.runs.measures.quality_per_language]'s.
    """
    return {
        lang: store.reuse_json(
            analysis,
            key(lang),
            lambda: Replacement(*replacement_losses(model, clt, documents[lang], store.run.batch_tokens)),
            Replacement,
        )
        for lang in store.languages
    }


def stats_per_language(
    store: Store,
    analysis: str,
    key: Callable[[str], str],
    model: Model,
    clt: CrossLayerTranscoder,
    documents: Documents,
) -> dict[str, FeatureStats]:
    """Per language of the run, every feature's active count and activation sum on its documents.

    The arguments are [`quality_per_language`][workbench.clt.runs.measures.quality_per_language]'s;
    the part ``key(lang)`` is an ``.npz`` file.
    """
    return {
        lang: store.reuse(
            analysis,
            key(lang),
            lambda: feature_stats(model, clt, documents[lang], store.run.batch_tokens),
            FeatureStats.load,
            _save_stats,
        )
        for lang in store.languages
    }


def _save_stats(stats: FeatureStats, path: Path) -> None:
    stats.save(path)
