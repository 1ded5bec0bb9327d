"""The language of every token of a vocabulary: labels, their disk cache, and their accuracy.

A model's vocabulary is decoded one token at a time and every piece labelled by a
[`TokenClassifier`][workbench.language.classifier.TokenClassifier]; the labels are kept as
[`VocabLanguages`][workbench.language.vocabulary.VocabLanguages] (compact arrays the lens indexes by
token id) and cached on disk per vocabulary and classifier settings, since labelling a large
vocabulary takes a while. [`heldout_accuracy`][workbench.language.vocabulary.heldout_accuracy]
measures them on held-out text of known language.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from jaxtyping import Bool, Int

from workbench.errors import WorkbenchError
from workbench.language.classifier import AMBIGUOUS, NONE, SPECIAL_LABELS, UNKNOWN, TokenClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from workbench.data.corpus import Corpus


@dataclass
class VocabLanguages:
    """The label of every token id of a vocabulary.

    Attributes:
        names: The special labels, then the languages.
        labels: Each token's label, as an index into ``names`` (int16).
        candidates: Each token's languages, as a bit set over ``languages`` (int64): one bit for a
            token of one language, several for an ambiguous one, none for the special labels.
    """

    names: list[str]
    labels: Int[np.ndarray, " d_vocab"]
    candidates: Int[np.ndarray, " d_vocab"]

    @property
    def languages(self) -> list[str]:
        """The languages, in bit order."""
        return self.names[len(SPECIAL_LABELS) :]

    def is_label(self, label: str) -> Bool[np.ndarray, " d_vocab"]:
        """Tokens labelled exactly ``label``."""
        if label not in self.names:
            return np.zeros(len(self.labels), dtype=bool)
        return self.labels == self.names.index(label)

    def may_be(self, language: str) -> Bool[np.ndarray, " d_vocab"]:
        """Tokens of ``language``, or ambiguous between it and others."""
        if language not in self.languages:
            return np.zeros(len(self.labels), dtype=bool)
        return (self.candidates >> self.languages.index(language)) & 1 == 1

    def label_of(self, token_id: int) -> str:
        """The label of one token."""
        return self.names[int(self.labels[token_id])]

    def counts(self) -> dict[str, int]:
        """How many tokens carry each label."""
        values = np.bincount(self.labels, minlength=len(self.names))
        return {name: int(n) for name, n in zip(self.names, values)}


def _present(tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    """The tokenizer, refused with a message where the model has none."""
    if tokenizer is None:
        raise WorkbenchError("Token languages need the model's tokenizer; this model has none.")
    return tokenizer


def decoded_vocab(tokenizer: PreTrainedTokenizerBase | None, d_vocab: int) -> list[str]:
    """Each token id decoded on its own, keeping a word-start space.

    Specials and raw-byte pieces decode to '' (no language), as do ids past the tokenizer's
    vocabulary.

    Args:
        tokenizer: The model's tokenizer (``model.tokenizer``).
        d_vocab: The model's vocabulary size.

    Returns:
        Each token id's piece.

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    tokenizer = _present(tokenizer)
    size = min(d_vocab, len(tokenizer))
    pieces = cast(list[str | None], tokenizer.convert_ids_to_tokens(list(range(size))))  # a list in, a list out
    special = set(getattr(tokenizer, "all_special_tokens", []))
    out = []
    for piece in pieces:
        if piece is None or piece in special or (piece.startswith("<0x") and piece.endswith(">")):
            out.append("")
        else:
            out.append(tokenizer.convert_tokens_to_string([piece]))
    return out + [""] * (d_vocab - size)


def label_vocab(pieces: Sequence[str], classifier: TokenClassifier) -> VocabLanguages:
    """Classify every decoded piece."""
    names = list(SPECIAL_LABELS) + list(classifier.languages)
    index = {name: i for i, name in enumerate(names)}
    bit = {lang: 1 << i for i, lang in enumerate(classifier.languages)}
    labels = np.empty(len(pieces), dtype=np.int16)
    candidates = np.zeros(len(pieces), dtype=np.int64)
    for token_id, piece in enumerate(pieces):
        result = classifier.classify(piece)
        labels[token_id] = index[result.label]
        for lang in result.candidates or ((result.label,) if result.label in bit else ()):
            candidates[token_id] |= bit[lang]
    return VocabLanguages(names, labels, candidates)


def vocab_languages(
    tokenizer: PreTrainedTokenizerBase | None, d_vocab: int, classifier: TokenClassifier, cache_dir: Path | None = None
) -> VocabLanguages:
    """Labels for every token id, cached on disk per (vocabulary, classifier settings).

    Args:
        tokenizer: The model's tokenizer (``model.tokenizer``).
        d_vocab: The model's vocabulary size (ids past the tokenizer's are labelled ``none``).
        classifier: The classifier.
        cache_dir: Where the cache folder ``langid`` goes; by default the workbench cache.

    Returns:
        The vocabulary's labels.

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    from workbench.models.catalog import cache_root
    from workbench.runs.results import load_arrays, load_json, save_arrays, save_json

    pieces = decoded_vocab(tokenizer, d_vocab)
    key = hashlib.sha256(("\x00".join(pieces) + repr(classifier.describe())).encode("utf-8")).hexdigest()[:16]
    folder = (cache_dir or cache_root()) / "langid"
    arrays_path, meta_path = folder / f"vocab-{key}.npz", folder / f"vocab-{key}.json"
    if arrays_path.exists() and meta_path.exists():
        arrays = load_arrays(arrays_path)
        return VocabLanguages(load_json(meta_path)["names"], arrays["labels"], arrays["candidates"])
    vocab = label_vocab(pieces, classifier)
    save_arrays(arrays_path, {"labels": vocab.labels, "candidates": vocab.candidates})
    save_json(meta_path, {"names": vocab.names, "classifier": classifier.describe()})
    return vocab


def accuracy_table(
    vocab: VocabLanguages, tokens_by_language: Mapping[str, Sequence[Sequence[int]]]
) -> list[dict[str, Any]]:
    """Per-language precision and recall of the token labels on texts of known language.

    Tokens labelled ``none`` (punctuation, digits, fragments) are left out.

    Args:
        vocab: The vocabulary's labels.
        tokens_by_language: Per language, the token ids of its texts (parallel texts give every
            language the same content).

    Returns:
        One row per language. ``recall``: the share of a language's content tokens labelled
        exactly that language; ``recall_or_ambiguous``: also counting ambiguous tokens that list
        it; ``precision``: of all tokens labelled L across every language's texts, the share that
        came from L's texts. ``ambiguous`` and ``unknown`` give the shares of content tokens so
        labelled.
    """
    none, ambiguous, unknown = (vocab.names.index(x) for x in (NONE, AMBIGUOUS, UNKNOWN))
    ids = {
        lang: np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) for lang, docs in tokens_by_language.items()
    }
    labelled_as: Counter = Counter()
    for lang_ids in ids.values():
        labelled_as.update(vocab.labels[lang_ids].tolist())
    rows = []
    for lang, lang_ids in ids.items():
        content = lang_ids[vocab.labels[lang_ids] != none]
        labels = vocab.labels[content]
        code = vocab.names.index(lang) if lang in vocab.languages else -1
        hits = int((labels == code).sum())
        n = max(len(content), 1)
        rows.append(
            {
                "language": lang,
                "tokens": int(len(lang_ids)),
                "content_tokens": int(len(content)),
                "precision": round(hits / max(labelled_as[code], 1), 4),
                "recall": round(hits / n, 4),
                "recall_or_ambiguous": round(int(vocab.may_be(lang)[content].sum()) / n, 4),
                "ambiguous": round(int((labels == ambiguous).sum()) / n, 4),
                "unknown": round(int((labels == unknown).sum()) / n, 4),
            }
        )
    return rows


def heldout_accuracy(
    tokenizer: PreTrainedTokenizerBase | None,
    vocab: VocabLanguages,
    corpus: Corpus,
    languages: Sequence[str],
    n: int = 300,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """[`accuracy_table`][workbench.language.vocabulary.accuracy_table] on held-out documents of ``corpus``.

    ``n`` aligned documents per language, drawn with ``seed`` from the held-out split (the word
    lists only ever see the analysis split), tokenised by ``tokenizer`` (``model.tokenizer``).

    Raises:
        WorkbenchError: Where the model has no tokenizer.
    """
    tokenizer = _present(tokenizer)
    docs = corpus.parallel_sample(list(languages), n, "heldout", seed)
    tokens = {
        lang: [tokenizer(text, add_special_tokens=False)["input_ids"] for text in docs[lang]["text"]]
        for lang in languages
    }
    return accuracy_table(vocab, tokens)
