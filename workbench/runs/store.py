"""Where a run keeps its work: finished results, and checkpoint parts that a resumed run reuses.

A part is one finished piece of an analysis (a language's loss, a language's PLND summary, a
trained delta, one deactivation measurement), saved at once under
``parts/<analysis>-<fingerprint>/<key>``. The fingerprint hashes the analysis's options, the run's
settings and the fingerprints of the analyses it needs, so a part made with other settings is
never found, never mixed in: it is redone. A store without a folder (notebooks) keeps results in
memory and saves nothing. Under ``torchrun`` rank 0 alone reads and writes the folder and gives
every rank what it found ([`workbench.runs.distributed`][workbench.runs.distributed]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from jaxtyping import Int

from workbench.data.batching import tokenize
from workbench.errors import MissingResultError
from workbench.runs import distributed
from workbench.runs.options import RunOptions
from workbench.runs.results import decode, encode, load_json, read_manifest, save_json
from workbench.runs.slices import load_slice

if TYPE_CHECKING:
    from workbench.data.corpora.base import Corpus, Split
    from workbench.models.model import Model

T = TypeVar("T")
PARTS = "parts"
"""The folder of the finished parts, in a run's folder."""


@dataclass
class Store:
    """A run's folder (or none), its settings, and the results finished so far.

    Attributes:
        folder: The run's folder; None keeps everything in memory (notebooks).
        run: The run's settings.
        fingerprints: Each analysis's fingerprint, which names its parts' folder.
        results: The results finished so far, by analysis.
        show_progress: Whether the analyses show progress bars.
        parts: The parts found or computed this session, by (analysis, key).
    """

    folder: Path | None
    run: RunOptions = field(default_factory=RunOptions)
    fingerprints: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True
    parts: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def memory(cls, languages: list[str] | tuple[str, ...], show_progress: bool = True, **run: Any) -> Store:
        """A store that saves nothing (for notebooks): ``languages`` and other run settings.

        Args:
            languages: The run's languages.
            show_progress: Whether the analyses show progress bars.
            **run: Other [`RunOptions`][workbench.runs.options.RunOptions] fields (``seed``, ...).
        """
        return cls(None, RunOptions(languages=tuple(languages), **run), show_progress=show_progress)

    @classmethod
    def open(cls, folder: Path | str, show_progress: bool = True) -> Store:
        """A finished (or partly finished) run folder, with the settings and fingerprints of its manifest.

        So ``result(name)`` loads what the job saved instead of recomputing it.

        Raises:
            MissingResultError: ``folder`` has no manifest.
        """
        manifest = read_manifest(Path(folder))
        run = RunOptions.from_dict(manifest["run"])
        prints = {name: entry["fingerprint"] for name, entry in manifest.get("analyses", {}).items()}
        return cls(Path(folder), run, prints, show_progress=show_progress)

    @property
    def languages(self) -> list[str]:
        """The run's languages."""
        return list(self.run.languages)

    def documents(
        self, model: Model, corpus: Corpus, n: int, split: Split, seed_offset: int = 0
    ) -> dict[str, list[Int[torch.Tensor, " pos"]]]:
        """``n`` parallel documents of ``split`` per language of the run, as token ids, BOS first.

        Sampled with the run's seed plus ``seed_offset``; tokenised under the run's length policy.
        """
        ids = corpus.sample_ids(self.languages, n, split, self.run.seed + seed_offset)
        texts = corpus.parallel(self.languages, ids)
        policy = self.run.length_policy
        return {lang: tokenize(model, texts[lang]["text"], ids, on_too_long=policy) for lang in self.languages}

    def part(self, analysis: str, key: str) -> Path | None:
        """The file of one part (``key`` includes its suffix), or None without a folder."""
        if self.folder is None:
            return None
        return Path(self.folder) / PARTS / f"{analysis}-{self.fingerprints.get(analysis, 'adhoc')}" / key

    def reuse(
        self,
        analysis: str,
        key: str,
        compute: Callable[[], T],
        load: Callable[[Path], T],
        save: Callable[[T, Path], None],
    ) -> T:
        """The part ``key`` of ``analysis``: loaded where a run with the same settings finished it.

        Otherwise computed and saved at once. Kept in ``parts`` for this session, so a store
        without a folder still offers them (e.g. PLND's per-language summaries).

        Args:
            analysis: The analysis the part belongs to.
            key: The part's file name in its folder (with its suffix).
            compute: Makes the part.
            load: Reads it from its file.
            save: Writes it to its file.
        """
        if (analysis, key) not in self.parts:
            path = self.part(analysis, key)
            if path is not None and distributed.from_main(path.exists):
                self.parts[analysis, key] = distributed.from_main(lambda: load(path))
            else:
                value = self.parts[analysis, key] = compute()
                if path is not None:
                    distributed.on_main(lambda: save(value, path))
        return self.parts[analysis, key]

    def reuse_each(
        self,
        analysis: str,
        work: dict[str, Callable[[], T]],
        load: Callable[[Path], T],
        save: Callable[[T, Path], None],
    ) -> list[T]:
        """[`reuse`][workbench.runs.store.Store.reuse] of every ``key: compute`` of ``work``, in order.

        Under ``torchrun`` the missing parts are shared out: in rounds of one part per process
        (process ``r`` computing the round's ``r``-th), each round's parts gathered on every
        process and saved at once, so an interrupted run loses at most one round.
        """
        w = distributed.world()
        if w.size > 1:
            missing = distributed.from_main(lambda: [key for key in work if not self._found(analysis, key)])
            for start in range(0, len(missing), w.size):
                round_keys = missing[start : start + w.size]
                mine = {key: work[key]() for key in round_keys[w.rank : w.rank + 1]}
                for part in distributed.all_gather(mine):
                    for key, value in part.items():
                        self.parts[analysis, key] = value
                        path = self.part(analysis, key)
                        if path is not None:
                            distributed.on_main(lambda value=value, path=path: save(value, path))
        return [self.reuse(analysis, key, compute, load, save) for key, compute in work.items()]

    def _found(self, analysis: str, key: str) -> bool:
        """Whether the part is known this session or saved in the folder."""
        path = self.part(analysis, key)
        return (analysis, key) in self.parts or (path is not None and path.exists())

    def reuse_json_each(self, analysis: str, work: dict[str, Callable[[], T]], cls: type[T]) -> list[T]:
        """[`reuse_each`][workbench.runs.store.Store.reuse_each] for parts that are dataclasses saved as JSON.

        Each ``key`` is a ``.json`` name; ``cls`` is the parts' class.
        """
        return self.reuse_each(
            analysis,
            work,
            lambda path: decode(cls, load_json(path)),
            lambda value, path: save_json(path, encode(value)),
        )

    def reuse_json(self, analysis: str, key: str, compute: Callable[[], T], cls: type[T]) -> T:
        """[`reuse`][workbench.runs.store.Store.reuse] for a dataclass part, saved as ``key`` (a ``.json`` name)."""
        return self.reuse(
            analysis,
            key,
            compute,
            lambda path: decode(cls, load_json(path)),
            lambda value, path: save_json(path, encode(value)),
        )

    def keep(self, analysis: str, result: Any) -> Any:
        """Remember a finished result (and save it in the folder)."""
        self.results[analysis] = result
        if self.folder is not None:
            distributed.on_main(lambda: result.save(self.folder))
        return result

    def result_if_run(self, analysis: str) -> Any | None:
        """The result of ``analysis`` if this run includes it, else None.

        For an analysis that uses it where it is there: it then finished before any analysis that
        comes after it in run order.
        """
        return self.result(analysis) if analysis in self.fingerprints else None

    def result(self, analysis: str) -> Any:
        """The result of an analysis this one needs: from this run, or from the folder.

        Raises:
            MissingResultError: The result is neither in this run nor in the folder.
        """
        if analysis not in self.results:
            if self.folder is None:
                raise MissingResultError(f"No {analysis} result in this store; run that analysis first.")
            self.results[analysis] = distributed.from_main(lambda: load_slice(analysis).Result.load(self.folder))
        return self.results[analysis]
