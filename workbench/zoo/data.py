"""Training text for zoo models, and the plan that decides which language each training sequence reads.

The text is every translation of a language, analysis split only. Held-out verses never reach
training: a verse id is held out in every translation at once
([`split_of`][workbench.data.corpora.base.split_of] hashes the id, not the text), so the
analyses' held-out evaluation is unseen text for every zoo model, whatever translation it reads.

A language's *stream* is its analysis verses, translation after translation in canonical order,
each verse's tokens followed by ``<eos>``. A training sequence is ``<bos>`` plus a window of
``context`` tokens of one stream (``context`` predictions). The
[`SequencePlan`][workbench.zoo.data.SequencePlan] is a pure function of the mixture, the stream
lengths, the budget and the seed: sequence ``i`` always comes from the same language and window,
so a resumed run reads exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Int

from workbench.data.corpora.base import split_of
from workbench.data.corpora.bible import BIBLE_TRANSLATIONS, DEFAULT_BIBLE_TRANSLATIONS, BibleCorpus
from workbench.errors import WorkbenchError
from workbench.zoo.mixture import Mixture

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class BudgetError(WorkbenchError, ValueError):
    """A token budget that would read a language's text more often than allowed."""


def available_languages() -> list[str]:
    """Languages with Bible text to train on."""
    return sorted(DEFAULT_BIBLE_TRANSLATIONS)


def training_verses(language: str) -> list[tuple[str, str]]:
    """``(translation:verse id, text)`` of every analysis-split verse in every translation of ``language``.

    Translation by translation in the catalogue's order, verses in canonical order.
    """
    out = []
    for translation in (t for t in BIBLE_TRANSLATIONS if t.language == language):
        texts = BibleCorpus({language: translation.code}).texts(language)
        ordered = sorted(texts, key=lambda i: tuple(int(part) for part in i.split(".")))
        out += [
            (f"{translation.code}:{i}", texts[i])
            for i in ordered
            if split_of(i, BibleCorpus.heldout_fraction) == "analysis"
        ]
    return out


def language_stream(
    tokenizer: PreTrainedTokenizerBase, language: str, cache: Path | None = None
) -> Int[np.ndarray, " token"]:
    """The token stream of ``language`` (int32): each training verse's tokens, then ``<eos>``.

    Cached as ``cache/<language>.npy`` when a cache folder is given (one per tokenizer).
    """
    path = cache / f"{language}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    texts = [text for _, text in training_verses(language)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    stream = np.fromiter((t for verse in ids for t in (*verse, eos)), dtype=np.int32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp.npy")
        np.save(partial, stream)
        partial.replace(path)
    return stream


@dataclass(frozen=True)
class SequencePlan:
    """Which language and window every training sequence reads.

    ``language_of[i]`` indexes ``languages``; ``rank[i]`` counts the sequences of that language
    before ``i``. Languages are interleaved so that every prefix of the plan holds each language
    within one sequence of its share (the largest deficit goes next).
    """

    languages: tuple[str, ...]
    windows: tuple[int, ...]  # non-overlapping windows of ``context`` tokens per language
    context: int
    seed: int
    language_of: Int[np.ndarray, " sequence"]
    rank: Int[np.ndarray, " sequence"]

    @classmethod
    def build(
        cls,
        mixture: Mixture,
        lengths: dict[str, int],
        context: int,
        n_sequences: int,
        seed: int,
        max_epochs: float = 1.0,
    ) -> SequencePlan:
        """The plan of ``n_sequences`` sequences, each language within one sequence of its share.

        Args:
            mixture: The languages and their shares (those with share 0 get no sequences).
            lengths: Each trained language's stream length, in tokens.
            context: Tokens per window.
            n_sequences: Sequences in the plan (the budget over ``context``).
            seed: Seeds the order of each language's windows.
            max_epochs: Most passes allowed over any language's stream.

        Raises:
            BudgetError: The plan reads a language more often than ``max_epochs``.
        """
        languages = tuple(mixture.trained)
        shares = np.array([mixture.share(lang) for lang in languages])
        language_of = np.empty(n_sequences, dtype=np.int64)
        rank = np.empty(n_sequences, dtype=np.int64)
        counts = np.zeros(len(languages), dtype=np.int64)
        for i in range(n_sequences):
            pick = int(np.argmax(shares * (i + 1) - counts))
            language_of[i], rank[i] = pick, counts[pick]
            counts[pick] += 1
        windows = tuple(lengths[lang] // context for lang in languages)
        plan = cls(languages, windows, context, seed, language_of, rank)
        plan.check_epochs(max_epochs)
        return plan

    def sequences_per_language(self) -> dict[str, int]:
        """How many sequences each language gives."""
        counts = np.bincount(self.language_of, minlength=len(self.languages))
        return {lang: int(n) for lang, n in zip(self.languages, counts)}

    def epochs(self) -> dict[str, float]:
        """Passes over each language's training text that the plan makes."""
        counts = self.sequences_per_language()
        return {lang: counts[lang] / max(w, 1) for lang, w in zip(self.languages, self.windows)}

    def check_epochs(self, max_epochs: float) -> None:
        """Refuse a plan that reads any language more than ``max_epochs`` times, naming the fixes."""
        over = [(lang, e, w) for (lang, e), w in zip(self.epochs().items(), self.windows) if e > max_epochs]
        if over:
            detail = ", ".join(f"{lang} {e:.2f} passes over {w * self.context:,} tokens" for lang, e, w in over)
            raise BudgetError(
                f"The budget reads more text than there is: {detail} (allowed: {max_epochs:g}). "
                f"Lower --tokens or these shares, or allow repeats with --max-epochs {max(e for _, e, _ in over):.2f}."
            )

    def window(self, language: int, k: int) -> int:
        """The window of the ``k``-th sequence of ``language``: a fresh permutation every pass."""
        n = self.windows[language]
        return int(_permutation(self.seed, language, k // n, n)[k % n])

    def batch(
        self, indices: range, streams: dict[str, Int[np.ndarray, " token"]], bos: int
    ) -> Int[np.ndarray, "batch pos"]:
        """``[len(indices), context + 1]`` token ids: ``<bos>`` then each sequence's window."""
        out = np.empty((len(indices), self.context + 1), dtype=np.int64)
        out[:, 0] = bos
        for row, i in enumerate(indices):
            language = int(self.language_of[i])
            start = self.window(language, int(self.rank[i])) * self.context
            out[row, 1:] = streams[self.languages[language]][start : start + self.context]
        return out


@functools.lru_cache(maxsize=32)
def _permutation(seed: int, language: int, epoch: int, n: int) -> Int[np.ndarray, " window"]:
    return np.random.default_rng([seed, language, epoch]).permutation(n)
