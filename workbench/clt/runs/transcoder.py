"""The run's transcoder: trained or loaded by the ``clt-train`` analysis, kept as one of its parts.

The finished transcoder is the part ``parts/clt-train-<fingerprint>/transcoder`` (``config.json``
and safetensors): [`keep_transcoder`][workbench.clt.runs.transcoder.keep_transcoder] saves it there
once, and the analyses that read it (features, steering, graphs, diffing) get it back with
[`transcoder`][workbench.clt.runs.transcoder.transcoder].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workbench.clt.training.train import TrainSettings, TrainState
from workbench.clt.transcoder import CrossLayerTranscoder, check_fits
from workbench.errors import MissingResultError, WorkbenchError
from workbench.models.model import Model
from workbench.runs import distributed
from workbench.runs.store import Store

ANALYSIS = "clt-train"
"""The analysis that makes the run's transcoder, and whose parts hold it."""
TRANSCODER = "transcoder"
"""The part holding the finished transcoder (trained or loaded)."""

SPLICED = "spliced"
"""The part holding it after the spliced fine-tune (``--clt-train-splice-steps``): the one the other analyses read."""
LOG_ENTRIES = 200
"""About how many entries of the training log are kept (every n-th step)."""


@dataclass
class Training:
    """How the transcoder was trained: time, rows per second, and the loss curve (every ``every`` steps)."""

    seconds: float
    rows: int
    steps: int
    every: int
    log: list[dict] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        """Training rows per second of training time (NaN where no time was measured)."""
        return self.rows / self.seconds if self.seconds else float("nan")

    @classmethod
    def of(cls, state: TrainState, settings: TrainSettings) -> Training:
        """A finished training run, its log thinned to every n-th step (and the last)."""
        every = max(1, settings.steps // LOG_ENTRIES)
        log = [
            {"step": i + 1, **entry}
            for i, entry in enumerate(state.log)
            if (i + 1) % every == 0 or i + 1 == len(state.log)
        ]
        return cls(state.seconds, settings.steps * settings.batch_tokens, settings.steps, every, log)


@dataclass
class Splice:
    """The spliced fine-tune of the transcoder's decoders.

    Made by [`finetune_spliced`][workbench.clt.training.splice.finetune_spliced].

    Attributes:
        seconds: Its time.
        steps: Its optimiser steps.
        lr: Its learning rate.
        log: Per step, the KL of the spliced model from the original (nats per token), the layers'
            mean normalised reconstruction error, and the seconds it took.
    """

    seconds: float
    steps: int
    lr: float
    log: list[dict] = field(default_factory=list)


def transcoder(store: Store) -> CrossLayerTranscoder:
    """The run's transcoder, for the analyses that read it: the spliced fine-tune's where the run made one.

    Raises:
        MissingResultError: The run has no transcoder yet.
    """
    return _part(store, _current(store))


def base_transcoder(store: Store) -> CrossLayerTranscoder:
    """The transcoder ``clt-train`` trained or loaded, before any spliced fine-tune.

    Raises:
        MissingResultError: The run has no transcoder yet.
    """
    return _part(store, TRANSCODER)


def _part(store: Store, key: str) -> CrossLayerTranscoder:
    def missing() -> CrossLayerTranscoder:
        raise MissingResultError("No transcoder in this run yet; run clt-train first.")

    return store.reuse(ANALYSIS, key, missing, lambda path: CrossLayerTranscoder.load(path, store.run.device), _save)


def _current(store: Store) -> str:
    """The part the run's analyses read: the spliced fine-tune where the run holds one, else the transcoder."""
    path = store.part(ANALYSIS, SPLICED)
    spliced = (ANALYSIS, SPLICED) in store.parts or (path is not None and path.exists())
    return SPLICED if spliced else TRANSCODER


def keep_transcoder(store: Store, clt: CrossLayerTranscoder, key: str = TRANSCODER) -> CrossLayerTranscoder:
    """Keep ``clt`` as the run's transcoder (``key``: or as its spliced fine-tune), for this session and saved."""
    store.parts[ANALYSIS, key] = clt
    part = store.part(ANALYSIS, key)
    if part is not None:
        distributed.on_main(lambda: _save(clt, part))  # under torchrun every rank holds the same transcoder
    return clt


def transcoder_folder(store: Store) -> str:
    """The folder of the run's transcoder, relative to the run folder ("" for a store without a folder)."""
    part = store.part(ANALYSIS, _current(store))
    return str(part.relative_to(store.folder)) if part is not None and store.folder is not None else ""


def load_given(spec: str, model: Model, name: str, variant: str | None = None) -> CrossLayerTranscoder:
    """The transcoder ``--clt-train-load`` names, checked against the model.

    Args:
        spec: A folder of ours, of featflow, of circuit-tracer or Gemma Scope 2's downloaded
            ``transcoder_all`` or ``clt`` folder, or SAELens transcoder folders, one per layer,
            comma-separated ([`load_transcoder`][workbench.clt.formats.load_transcoder] tells which).
        model: The run's model.
        name: The model's name, which the transcoder must have been made for.
        variant: ``--clt-train-load-variant``: which of the Gemma Scope 2 variants in the folder to
            use, as their folder names end (``width_16k_l0_small_affine``); None where it holds one.

    Raises:
        WorkbenchError: A folder is missing, a variant is missing or not chosen, or the transcoder
            does not fit the model.
    """
    from workbench.clt.formats import load_transcoder

    folders = [Path(part.strip()) for part in spec.split(",") if part.strip()]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise WorkbenchError(
            f"--clt-train-load: no folder {', '.join(missing)}; give a transcoder folder (ours, featflow's, "
            "circuit-tracer's, Gemma Scope 2's transcoder_all or clt) or SAELens transcoder folders, one per layer."
        )
    clt = load_transcoder(folders, model_name=name, model=model, device=model.cfg.device or "cpu", variant=variant)
    check_fits(clt, model, name)
    return clt


def _save(clt: CrossLayerTranscoder, path: Path) -> None:
    clt.save(path)
