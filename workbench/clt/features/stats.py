"""Which transcoder features carry language identity, and which are shared across languages.

For every feature and language, on parallel held-out verses (BOS dropped):

* **frequency**: the share of the language's tokens on which the feature is active (> 0);
* **mean**: its mean activation over the language's tokens (0 where inactive), and its mean where
  active (what steering switches a feature on to).

From these, per feature:

* **share** of language ``l``: ``freq_l / sum_k freq_k``, the part of the feature's use that falls
  on ``l`` when every language has as many tokens (uniform: ``1 / n_languages``);
* **specific** to ``l``: used by ``l`` (``freq_l >= min_frequency``) with ``share_l >=
  specific_share``; **multilingual**: used by every language; **rare**: used by none;
* the **identity score** of ``(feature, l)``: ``freq_l - max_{k != l} freq_k``, high for a feature
  that fires on most of ``l``'s tokens and on few of any other's. arXiv 2511.10840 finds a few such
  high-frequency features in late layers that carry language identity; the top ones per language
  are what [`workbench.clt.steering.steer`][workbench.clt.steering.steer] switches.

The paper's claim to check: multilingual features dominate the middle layers, language-specific
ones the early and late layers. Feature cards ([`top_contexts`][workbench.clt.features.stats.top_contexts])
show a feature's top activating tokens in context, per language.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from jaxtyping import Int

from workbench.clt.activations import document_rows, mlp_io
from workbench.clt.transcoder import CrossLayerTranscoder
from workbench.data.batching import iter_batches, pad_id_of
from workbench.models.model import model_device
from workbench.runs.results import load_arrays, save_arrays

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from workbench.models.model import Model


@dataclass
class FeatureStats:
    """One language's feature statistics: token count, per-feature active counts and sums.

    Attributes:
        tokens: The tokens counted.
        active: ``[L, F]``: the tokens on which each feature is active.
        total: ``[L, F]``: the sum of each feature's activations.
    """

    tokens: int
    active: np.ndarray
    total: np.ndarray

    @property
    def frequency(self) -> np.ndarray:
        """``[L, F]``: the share of tokens on which each feature is active."""
        return self.active / max(self.tokens, 1)

    @property
    def mean(self) -> np.ndarray:
        """``[L, F]``: each feature's mean activation per token (0 where inactive)."""
        return self.total / max(self.tokens, 1)

    @property
    def active_mean(self) -> np.ndarray:
        """Mean activation where active (0 for a feature never active)."""
        return self.total / np.maximum(self.active, 1)

    def save(self, path: Path) -> None:
        """Write the statistics to ``path`` (arrays)."""
        save_arrays(path, {"tokens": np.array(self.tokens), "active": self.active, "total": self.total})

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        """The statistics [`save`][workbench.clt.features.stats.FeatureStats.save] wrote to ``path``."""
        data = load_arrays(path)
        return cls(int(data["tokens"]), data["active"], data["total"])


@torch.no_grad()
def feature_stats(
    model: Model, clt: CrossLayerTranscoder, documents: list[Int[torch.Tensor, " pos"]], batch_tokens: int = 2048
) -> FeatureStats:
    """Active counts and activation sums of every feature over ``documents`` (token lists, BOS first; dropped)."""
    L, F = clt.config.n_layers, clt.config.n_features
    active = torch.zeros(L, F, dtype=torch.float64)
    total = torch.zeros(L, F, dtype=torch.float64)
    tokens = 0
    for x, _ in document_rows(model, documents, batch_tokens):
        acts = clt.encode(x)
        active += (acts > 0).sum(0).double().cpu()
        total += acts.sum(0).double().cpu()
        tokens += len(x)
    return FeatureStats(tokens, active.numpy(), total.numpy())


@dataclass
class LanguageFeatures:
    """Every feature's frequency per language and what it makes of the feature.

    Attributes:
        languages: The languages, in order.
        frequency: ``[languages, L, F]``: each feature's frequency on each language's tokens.
        active_mean: ``[languages, L, F]``: its mean activation where active.
        min_frequency: The frequency from which a feature counts as used by a language.
        specific_share: The share of a feature's use from which it is specific to a language.
    """

    languages: list[str]
    frequency: np.ndarray
    active_mean: np.ndarray
    min_frequency: float
    specific_share: float

    @classmethod
    def of(cls, stats: dict[str, FeatureStats], min_frequency: float, specific_share: float) -> LanguageFeatures:
        """From each language's [`FeatureStats`][workbench.clt.features.stats.FeatureStats]."""
        langs = list(stats)
        return cls(
            langs,
            np.stack([stats[lang].frequency for lang in langs]),
            np.stack([stats[lang].active_mean for lang in langs]),
            min_frequency,
            specific_share,
        )

    @property
    def share(self) -> np.ndarray:
        """``[languages, L, F]``: each language's part of the feature's summed frequency (0 if never active)."""
        total = self.frequency.sum(0, keepdims=True)
        return np.divide(self.frequency, total, out=np.zeros_like(self.frequency), where=total > 0)

    @property
    def used(self) -> np.ndarray:
        """``[languages, L, F]``: whether each language uses each feature."""
        return self.frequency >= self.min_frequency

    def specific(self) -> np.ndarray:
        """``[languages, L, F]``: features specific to each language."""
        return self.used & (self.share >= self.specific_share)

    def multilingual(self) -> np.ndarray:
        """``[L, F]``: features used by every language."""
        return np.asarray(self.used.all(0))

    def rare(self) -> np.ndarray:
        """``[L, F]``: features used by no language."""
        return np.asarray(~self.used.any(0))

    def identity_score(self) -> np.ndarray:
        """``[languages, L, F]``: ``freq_l - max_{k != l} freq_k``."""
        return self._identity_score

    @cached_property
    def _identity_score(self) -> np.ndarray:
        """The identity scores, computed once."""
        if len(self.languages) < 2:
            return self.frequency.copy()
        top2 = np.sort(self.frequency, axis=0)[-2:]  # second largest, largest
        best_other = np.where(self.frequency >= top2[1:], top2[:1], top2[1:])
        return self.frequency - best_other

    def identity_features(self, language: str, k: int) -> list[tuple[int, int]]:
        """The ``k`` features with the highest identity score for ``language`` among its specific ones.

        ``(layer, feature)``, best first.
        """
        i = self.languages.index(language)
        score = np.where(self.specific()[i], self.identity_score()[i], -np.inf)
        order = np.argsort(-score, axis=None, kind="stable")[:k]
        return [divmod(int(j), score.shape[1]) for j in order if np.isfinite(score.flat[j])]

    def layer_counts(self) -> list[dict]:
        """Per layer: specific features per language, multilingual, rare and the rest."""
        specific, multi, rare = self.specific(), self.multilingual(), self.rare()
        rows = []
        for layer in range(self.frequency.shape[1]):
            row = {"layer": layer}
            row.update({f"specific {lang}": int(specific[i, layer].sum()) for i, lang in enumerate(self.languages)})
            row["specific"] = int(specific[:, layer].any(0).sum())
            row["multilingual"] = int(multi[layer].sum())
            row["rare"] = int(rare[layer].sum())
            row["other"] = int(self.frequency.shape[2] - row["specific"] - row["multilingual"] - row["rare"])
            rows.append(row)
        return rows


@dataclass
class Context:
    """One activation of a feature: its value and the text around it (the token in brackets).

    Attributes:
        activation: The feature's activation there.
        text: The tokens before it and the token itself, in brackets.
    """

    activation: float
    text: str


@torch.no_grad()
def top_contexts(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: list[Int[torch.Tensor, " pos"]],
    features: list[tuple[int, int]],
    k: int = 5,
    window: int = 8,
    batch_tokens: int = 2048,
) -> list[list[Context]]:
    """Per feature, its ``k`` highest activations over ``documents``, in context.

    Args:
        model: The hooked model (with a tokenizer).
        clt: Its transcoder.
        documents: Token lists, BOS first (BOS is left out).
        features: ``(layer, index)`` pairs.
        k: Activations per feature (one per document at most: its maximum there).
        window: Tokens shown before the active one.
        batch_tokens: Padded tokens per forward batch.
    """
    if not features:
        return []
    layers = torch.tensor([layer for layer, _ in features])
    index = torch.tensor([f for _, f in features])
    found: list[list[tuple[float, int, int]]] = [[] for _ in features]
    device = model_device(model)
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, device):
        rows, _ = mlp_io(model, batch.tokens)  # [batch * positions, L, d]
        acts = clt.encode(rows)[:, layers, index].view(*batch.tokens.shape, len(features)).cpu()
        keep = batch.mask.bool().cpu()
        keep[:, 0] = False
        values, positions = acts.masked_fill(~keep[..., None], 0.0).max(dim=1)  # [batch, features]
        for j in range(len(features)):
            found[j] += [
                (float(values[b, j]), doc, int(positions[b, j]))
                for b, doc in enumerate(batch.index)
                if values[b, j] > 0
            ]
            found[j] = sorted(found[j], reverse=True)[:k]
    return [
        [Context(value, _context_text(model, documents[doc], pos, window)) for value, doc, pos in best]
        for best in found
    ]


def _context_text(model: Model, tokens: torch.Tensor, position: int, window: int) -> str:
    """The window before ``position`` and its token in brackets.

    Decoded together, so a character split over tokens is not broken in two.
    """
    tokenizer = cast("PreTrainedTokenizerBase", model.tokenizer)  # every loaded model has one

    def text(ids: torch.Tensor) -> str:
        """Token ids decoded together."""
        return cast(str, tokenizer.decode(ids.tolist()))  # one sequence of ids decodes to one string

    start = max(1, position - window)
    before = text(tokens[start:position])
    full = text(tokens[start : position + 1])
    if full.startswith(before):
        return f"{before}[{full[len(before) :]}]"
    return f"{before}[{text(tokens[position : position + 1])}]"
