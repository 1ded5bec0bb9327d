"""Held-out loss of a zoo model per language: mean next-token loss (nats) over held-out verses.

The verses are of each language's default translation, and the training never saw them in any
translation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from workbench.data.corpus import BibleCorpus

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@torch.no_grad()
def heldout_losses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    languages: list[str],
    verses: int,
    context: int,
    device: str = "cpu",
    batch: int = 32,
) -> dict[str, float]:
    """Language -> mean loss per predicted token on ``verses`` held-out verses, from a Hugging Face causal LM.

    Each verse is ``<bos>`` and the verse, cut at ``context`` tokens; ``batch`` verses go through
    the model at once.
    """
    corpus = BibleCorpus()
    out = {}
    for language in languages:
        texts = list(corpus.documents(language, "heldout", n=verses, seed=0)["text"])
        total, count = 0.0, 0
        for start in range(0, len(texts), batch):
            enc = tokenizer(
                texts[start : start + batch], padding=True, truncation=True, max_length=context, return_tensors="pt"
            )
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            total += float((losses * mask[:, 1:]).sum())
            count += int(mask[:, 1:].sum())
        out[language] = round(total / max(count, 1), 5)
    return out
