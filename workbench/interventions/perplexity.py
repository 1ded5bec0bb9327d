"""Per-language next-token loss and perplexity on held-out documents.

This is the baseline every intervention (deactivating neurons, fine-tuning them) is measured
against, so it is computed the same way everywhere: mean next-token cross-entropy in nats over
all predicted tokens of a language (the BOS position predicts the first token; padding never
counts), perplexity = exp(mean loss), and a 95% bootstrap interval over documents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.data.batching import DEFAULT_BATCH_TOKENS, LengthPolicy, iter_batches, pad_id_of, tokenize
from workbench.lens.readout import next_token_losses
from workbench.models.model import Model, model_device
from workbench.runs.distributed import gather_in_order, shard
from workbench.runs.results import Result


@dataclass
class LanguageLoss:
    """Loss of one language: totals plus the per-document sums it rests on."""

    language: str
    ids: list[str]
    loss_sum: list[float]  # summed nats per document
    n_predicted: list[int]  # predicted tokens per document
    n_bytes: list[int]  # UTF-8 bytes of each document's text
    source: str = ""

    @property
    def n_documents(self) -> int:
        """Documents measured."""
        return len(self.ids)

    @property
    def n_tokens(self) -> int:
        """Tokens predicted, over every document."""
        return int(sum(self.n_predicted))

    @property
    def mean_loss(self) -> float:
        """Token-weighted mean loss (nats per token)."""
        return float(sum(self.loss_sum) / max(self.n_tokens, 1))

    @property
    def perplexity(self) -> float:
        """``exp`` of the mean loss."""
        return math.exp(self.mean_loss)

    @property
    def bits_per_byte(self) -> float:
        """Total loss in bits over the UTF-8 bytes of the texts.

        Comparable across tokenisers, so across languages of a parallel corpus, where loss per token
        is not.
        """
        return float(sum(self.loss_sum) / math.log(2) / max(sum(self.n_bytes), 1))

    def interval(self, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
        """95% bootstrap interval of the mean loss, resampling documents."""
        sums, counts = np.asarray(self.loss_sum), np.asarray(self.n_predicted)
        if len(sums) < 2:
            return (self.mean_loss, self.mean_loss)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        boot = sums[draws].sum(1) / np.maximum(counts[draws].sum(1), 1)
        low, high = np.percentile(boot, [2.5, 97.5])
        return float(low), float(high)

    def summary(self) -> dict:
        """The language's table row: sizes, mean loss with its interval, perplexity, bits per byte."""
        low, high = self.interval()
        return {
            "language": self.language,
            "source": self.source,
            "documents": self.n_documents,
            "tokens": self.n_tokens,
            "loss": round(self.mean_loss, 5),
            "loss_ci95": [round(low, 5), round(high, 5)],
            "perplexity": round(self.perplexity, 3),
            "bits_per_byte": round(self.bits_per_byte, 4),
            "tokens_per_document": round(self.n_tokens / max(self.n_documents, 1), 2),
        }


@dataclass
class LossResult(Result):
    """Per-language losses of one model on one corpus sample, with the settings that made them."""

    languages: dict[str, LanguageLoss]
    settings: dict = field(default_factory=dict)

    JSON = "loss.json"

    def table(self) -> list[dict]:
        """A [`summary`][workbench.interventions.perplexity.LanguageLoss.summary] row per language."""
        return [self.languages[lang].summary() for lang in self.languages]


@torch.inference_mode()
def document_losses(
    model: Model,
    token_lists: Sequence[Int[torch.Tensor, " pos"]],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[float], list[int]]:
    """Summed next-token loss (nats) and number of predicted tokens for each document.

    Under ``torchrun`` each rank takes its share and the records are gathered in document order.
    ``progress`` is called with each batch's token count.
    """
    device = model_device(model)
    mine = shard(len(token_lists))
    loss_sum = dict.fromkeys(mine, 0.0)
    counts = dict.fromkeys(mine, 0)
    for batch in iter_batches(token_lists, pad_id_of(model), batch_tokens, device, mine):
        per_token = next_token_losses(model, batch.tokens)
        valid = batch.mask[:, 1:].bool()
        per_doc = (per_token * valid).sum(1)
        for row, i in enumerate(batch.index):
            loss_sum[i] = float(per_doc[row])
            counts[i] = int(valid[row].sum())
        if progress is not None:
            progress(batch.n_tokens)
    n = len(token_lists)
    return gather_in_order([loss_sum[i] for i in mine], n), gather_in_order([counts[i] for i in mine], n)


def language_loss(
    model: Model,
    language: str,
    ids: list[str],
    texts: list[str],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    source: str = "",
    on_too_long: LengthPolicy = "truncate",
    show_progress: bool = True,
) -> LanguageLoss:
    """Loss of ``model`` on one language's documents (a tqdm bar counts tokens)."""
    tokens = tokenize(model, texts, ids, on_too_long=on_too_long)
    total = sum(len(tokens[i]) for i in shard(len(tokens)))
    with tqdm(total=total, unit="tok", desc=f"loss {language}", disable=not show_progress) as bar:
        loss_sum, counts = document_losses(model, tokens, batch_tokens, bar.update)
    n_bytes = [len(text.encode("utf-8")) for text in texts]
    return LanguageLoss(language, list(ids), loss_sum, counts, n_bytes, source)
