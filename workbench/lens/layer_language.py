"""The language of every layer (MWork Figure 1; Wendler et al.'s latent language).

From a [`LensReadout`][workbench.lens.logit_lens.LensReadout] and the language labels of the vocabulary:

* **ratio**: per layer, the shares of English, input-language, other-language, ambiguous and
  "none" tokens among the top-k decoded tokens (the paper's Figure 1);
* **latent language**: per layer, the probability mass the lens puts on English tokens and on
  input-language tokens, averaged per document, with bootstrap intervals over documents.

How each vocabulary token counts for an input language L (``token_categories``):
``english`` = labelled English; ``input`` = labelled L, or ambiguous between L and other
non-English languages ("de" for Spanish input); ``ambiguous`` = ambiguous between English and
other languages (for English input too); ``other`` = any other language, or ambiguous among
languages that are neither English nor L; ``none`` = punctuation, digits, fragments, unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from workbench.data.batching import DEFAULT_BATCH_TOKENS, LengthPolicy, tokenize
from workbench.language.classifier import NONE, UNKNOWN
from workbench.language.vocabulary import VocabLanguages
from workbench.lens.logit_lens import LensReadout, Positions, lens_hook_names, logit_lens
from workbench.models.model import Model
from workbench.runs.distributed import shard
from workbench.runs.results import Result

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CATEGORIES: tuple[str, ...] = ("english", "input", "other", "ambiguous", "none")
"""The categories a layer's decoded token falls in, in the order the figures stack them."""
ENGLISH, INPUT, OTHER, AMBIGUOUS_CAT, NONE_CAT = range(len(CATEGORIES))
"""The index of each category in [`CATEGORIES`][workbench.lens.layer_language.CATEGORIES]."""


def token_categories(vocab: VocabLanguages, input_language: str) -> Int[np.ndarray, " d_vocab"]:
    """The category of every vocabulary token for ``input_language``.

    Args:
        vocab: The vocabulary's language labels.
        input_language: The input language L (see the module docstring for how tokens count).

    Returns:
        Each token's index into [`CATEGORIES`][workbench.lens.layer_language.CATEGORIES].
    """
    cats = np.full(len(vocab.labels), OTHER, dtype=np.int8)
    may_en = vocab.may_be("en")
    may_input = vocab.may_be(input_language)
    exact_en = vocab.is_label("en")
    cats[may_input & ~may_en] = INPUT
    cats[may_en & ~exact_en] = AMBIGUOUS_CAT
    cats[exact_en] = ENGLISH  # for English input, "english" is the input language
    cats[vocab.is_label(NONE) | vocab.is_label(UNKNOWN)] = NONE_CAT
    return cats


def category_counts(
    topk_ids: Int[np.ndarray, "layer row k"], categories: Int[np.ndarray, " d_vocab"]
) -> Int[np.ndarray, "layer category"]:
    """Per layer, how many of the top-k tokens fall in each category."""
    cats = categories[topk_ids]  # [L, P, k]
    return np.stack([np.bincount(layer.ravel(), minlength=len(CATEGORIES)) for layer in cats])


def bootstrap_mean(
    per_doc: Float[np.ndarray, "document layer"], n_boot: int = 1000, seed: int = 0
) -> Float[np.ndarray, "layer 2"]:
    """95% bootstrap interval of the mean over documents, per layer (the mean twice for one document)."""
    if len(per_doc) < 2:
        mean = per_doc.mean(0)
        return np.stack([mean, mean], -1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_doc), size=(n_boot, len(per_doc)))
    boot = per_doc[draws].mean(1)  # [n_boot, L]
    return np.percentile(boot, [2.5, 97.5], axis=0).T


def per_document_mean(
    values: Float[np.ndarray, "layer row"], doc: Int[np.ndarray, " row"]
) -> Float[np.ndarray, "document layer"]:
    """Average ``values`` over each document's rows (positions), documents in order."""
    docs = np.unique(doc)
    return np.stack([values[:, doc == d].mean(1) for d in docs])


@dataclass
class LayerLanguages:
    """One input language through the layers.

    Attributes:
        language: The input language.
        counts: Per layer, the top-k tokens in each category.
        n_documents: The documents read.
        n_positions: The positions read.
        k: Top tokens per position.
        mass_english: Per layer, the mean probability mass on English tokens.
        mass_english_ci: Per layer, its 95% bootstrap interval over documents.
        mass_input: Per layer, the mean probability mass on input-language tokens.
        mass_input_ci: Per layer, its 95% bootstrap interval over documents.
        entropy: Per layer, the mean entropy (nats).
        final_top_prob: Per layer, the mean probability of the model's final top token.
        example: The top-1 token of each layer at one position (``layer``, ``token``, ``prob``).
    """

    language: str
    counts: list[list[int]]
    n_documents: int
    n_positions: int
    k: int
    mass_english: list[float]
    mass_english_ci: list[list[float]]
    mass_input: list[float]
    mass_input_ci: list[list[float]]
    entropy: list[float]
    final_top_prob: list[float]
    example: list[dict] = field(default_factory=list)

    def shares(self) -> Float[np.ndarray, "layer category"]:
        """Per layer, the share of the top-k tokens in each category."""
        counts = np.asarray(self.counts, dtype=np.float64)
        return counts / np.maximum(counts.sum(1, keepdims=True), 1)

    def share(self, category: str) -> list[float]:
        """Per layer, the share of the top-k tokens in ``category``."""
        return self.shares()[:, CATEGORIES.index(category)].tolist()


def summarise(
    readout: LensReadout,
    vocab: VocabLanguages,
    language: str,
    decode: Callable[[int], str] | None = None,
) -> LayerLanguages:
    """Ratios and latent-language masses of one input language's readout.

    Args:
        readout: The lens's readout, with the groups ``"english"`` and ``"input"`` (from
            [`lens_groups`][workbench.lens.layer_language.lens_groups]).
        vocab: The vocabulary's language labels.
        language: The input language.
        decode: Decodes a token id, for the example; without it there is none.

    Returns:
        The language through the layers.
    """
    cats = token_categories(vocab, language)
    en = readout.group_mass[:, :, readout.groups.index("english")]
    inp = readout.group_mass[:, :, readout.groups.index("input")]
    en_docs, inp_docs = per_document_mean(en, readout.doc), per_document_mean(inp, readout.doc)
    example = []
    if decode is not None and readout.topk_ids.shape[1]:
        example = [
            {
                "layer": layer,
                "token": decode(int(readout.topk_ids[layer, 0, 0])),
                "prob": round(float(readout.topk_probs[layer, 0, 0]), 4),
            }
            for layer in range(readout.n_layers)
        ]
    return LayerLanguages(
        language=language,
        counts=category_counts(readout.topk_ids, cats).tolist(),
        n_documents=int(len(np.unique(readout.doc))),
        n_positions=int(readout.topk_ids.shape[1]),
        k=int(readout.topk_ids.shape[2]),
        mass_english=en_docs.mean(0).tolist(),
        mass_english_ci=bootstrap_mean(en_docs).tolist(),
        mass_input=inp_docs.mean(0).tolist(),
        mass_input_ci=bootstrap_mean(inp_docs).tolist(),
        entropy=readout.entropy.mean(1).tolist(),
        final_top_prob=readout.final_top_prob.mean(1).tolist(),
        example=example,
    )


def lens_groups(vocab: VocabLanguages, language: str) -> dict[str, Bool[np.ndarray, " d_vocab"]]:
    """Vocabulary masks for the latent-language masses: English tokens and input-language tokens."""
    cats = token_categories(vocab, language)
    return {"english": cats == ENGLISH, "input": cats == (ENGLISH if language == "en" else INPUT)}


@dataclass
class LensResult(Result):
    """The lens analysis of a run: per input language, per layer; with the classifier's accuracy.

    Attributes:
        languages: Per input language, its layers.
        layer_names: The layers' names ([`layer_names`][workbench.lens.layer_language.layer_names]).
        settings: How the analysis was run.
        classifier: The token classifier's settings.
        accuracy: The classifier's accuracy per language.
    """

    languages: dict[str, LayerLanguages]
    layer_names: list[str]
    settings: dict = field(default_factory=dict)
    classifier: dict = field(default_factory=dict)
    accuracy: list[dict] = field(default_factory=list)

    JSON = "lens.json"

    def table(self) -> list[dict[str, Any]]:
        """One row per input language: where English peaks, and what the last layer shows."""
        rows = []
        for lang, r in self.languages.items():
            english = r.share("english")
            peak = int(np.argmax(english))
            rows.append(
                {
                    "language": lang,
                    "documents": r.n_documents,
                    "positions": r.n_positions,
                    "top-k tokens": r.n_positions * r.k,
                    "peak English share": round(english[peak], 3),
                    "at layer": self.layer_names[peak],
                    "English share, last layer": round(english[-1], 3),
                    "input share, last layer": round(r.share("input")[-1], 3),
                    "peak P(English)": round(max(r.mass_english), 3),
                    "P(input), last layer": round(r.mass_input[-1], 3),
                }
            )
        return rows


def lens_language(
    model: Model,
    vocab: VocabLanguages,
    language: str,
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    k: int = 10,
    positions: Positions = "sample",
    per_doc: int = 8,
    final_norm: bool = True,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    seed: int = 0,
    on_too_long: LengthPolicy = "truncate",
    show_progress: bool = True,
) -> LayerLanguages:
    """Run the logit lens on one language's texts and summarise it (ratios, masses, an example).

    Args:
        model: The model.
        vocab: The vocabulary's language labels.
        language: The texts' language.
        texts: The texts.
        ids: Their ids, for messages.
        k: Top tokens per layer and position.
        positions: Which positions to read.
        per_doc: Positions sampled per document.
        final_norm: Read every layer through the final norm.
        batch_tokens: Tokens per batch (padding included).
        seed: Seeds the sampled positions.
        on_too_long: What to do with a text longer than the model's context.
        show_progress: Show a progress bar.

    Returns:
        The language through the layers.
    """
    tokens = tokenize(model, texts, ids, on_too_long=on_too_long)
    total = sum(len(tokens[i]) for i in shard(len(tokens)))  # this process's share under torchrun
    with tqdm(total=total, unit="tok", desc=f"lens {language}", disable=not show_progress) as bar:
        readout = logit_lens(
            model,
            tokens,
            k=k,
            positions=positions,
            per_doc=per_doc,
            final_norm=final_norm,
            groups=lens_groups(vocab, language),
            batch_tokens=batch_tokens,
            seed=seed,
            progress=bar.update,
        )
    return summarise(readout, vocab, language, decode=functools.partial(_decode, model))


def _decode(model: Model, token_id: int) -> str:
    """One token id as text, by the model's tokenizer (every loaded model has one)."""
    tokenizer = cast("PreTrainedTokenizerBase", model.tokenizer)
    return cast(str, tokenizer.decode([token_id]))  # one sequence of ids decodes to one string


def layer_names(model: Model) -> list[str]:
    """Names of the lens's layers: "embed", then "1".."n" (the residual after that many blocks)."""
    return ["embed"] + [str(i) for i in range(1, len(lens_hook_names(model)))]
