"""Settings of transcoder training and its quality measures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.runs.options import OptionError, option
from workbench.runs.options import Options as Base

requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options(Base):
    """The transcoder's width and kind, its training data and schedule, and its held-out verses.

    The held-out verses are those its quality is measured on; ``load`` names a trained transcoder
    to use instead of training one.
    """

    ANALYSIS: ClassVar[str] = "clt-train"
    TITLE: ClassVar[str] = "clt train"
    # Gemma 3 270M: per-layer skip transcoders (the affine skip fitted in closed form), the training
    # verses' activations read once and reused over several passes, lambda 0.3 steered per layer towards
    # L0 48: the levers that paid in benchmarks/sweep_clt_gemma.py and the workshop runs (docs/clt.md).
    # The full study then fine-tunes the decoders through the spliced model (60 steps: the splice's cost
    # 1.6-10.6 -> 0.9-1.4 nats per token). The workshop trains every third layer and the last, whose
    # splice already costs under 1 nat.
    PRESETS: ClassVar[dict[str, dict]] = {
        "gemma-clt": {
            "per_layer": True,
            "skip": True,
            "reuse": True,
            "documents": 500,
            "tokens": 400_000,
            "batch": 256,
            "lr": 3e-3,
            "sparsity": 0.3,
            "target_l0": 48.0,
            "splice_steps": 60,
            "splice_lr": 3e-4,
        },
        "gemma-clt-workshop": {
            "per_layer": True,
            "skip": True,
            "reuse": True,
            "layers": (0, 3, 6, 9, 12, 15, 17),
            "documents": 400,
            "tokens": 120_000,
            "batch": 256,
            "lr": 3e-3,
            "sparsity": 0.3,
            "target_l0": 48.0,
        },
    }

    features: int = option(2048, "features per layer", minimum=1)
    per_layer: bool = option(False, "plain per-layer transcoders (each feature writes its own layer only)")
    window: int | None = option(
        None,
        "a windowed CLT: each feature writes its own and the next WINDOW layers "
        "(default: every later layer; 0 is --clt-train-per-layer)",
        minimum=0,
    )
    layers: tuple[int, ...] = option(
        (),
        "train and use only these layers (comma-separated; default all); the "
        "others keep their MLPs and are error nodes in graphs",
        minimum=0,
    )
    skip: bool = option(
        False,
        "skip transcoders: an affine map from each layer's MLP input to its output (fitted in closed form "
        "before training) beside the features, which then model what a linear map cannot",
    )
    documents: int = option(400, "training verses per language (analysis split)", minimum=1)
    tokens: int = option(300_000, "training rows (token positions; each holds every layer)", minimum=1)
    batch: int = option(1024, "rows per optimiser step", minimum=1)
    lr: float = option(1e-3, "Adam learning rate", minimum=0)
    sparsity: float = option(1.0, "lambda of the tanh sparsity penalty (ramped up from 0)", minimum=0)
    warmup: float = option(0.5, "share of the steps over which lambda ramps up", minimum=0)
    dead_penalty: float = option(
        1e-2,
        "weight of the pull on dead features' pre-activations (the paper's 1e-4 "
        "left 77-90%% of a zoo model's features dead)",
        minimum=0,
    )
    block_documents: int = option(500, "documents whose activations are shuffled together (memory)", minimum=1)
    reuse: bool = option(
        False,
        "read the training verses' activations once (kept in half precision, one block of them all) and take "
        "every pass over them from memory",
    )
    target_l0: float | None = option(
        None,
        "aim every layer at this L0: lambda is scaled per layer, up where more features fire, down where "
        "fewer (default: one fixed lambda)",
        minimum=1,
    )
    tied_init: bool = option(False, "start each encoder as its decoder's transpose (rescaled)")
    splice_steps: int = option(
        0,
        "then fine-tune the decoders (and skip) for this many steps through the spliced model: the KL of its "
        "next-token distribution from the model's plus each layer's reconstruction error; the encoders stay, so "
        "every feature fires where it did (also on a loaded transcoder; 0: none)",
        minimum=0,
    )
    splice_lr: float = option(1e-4, "Adam learning rate of the spliced fine-tune", minimum=0)
    heldout: int = option(50, "held-out verses per language for FVU, L0, dead share and replacement loss", minimum=1)
    load: str | None = option(
        None,
        "use this transcoder instead of training one: a folder of ours (config.json), "
        "of the CLT paper's featflow (clt_cfg.json) or of circuit-tracer (config.yaml), or "
        "SAELens transcoder folders, one per layer, comma-separated, or Gemma Scope 2's downloaded "
        "transcoder_all or clt folder (see docs/clt.md)",
    )
    load_variant: str | None = option(
        None,
        "with --clt-train-load a Gemma Scope 2 folder holding several variants: the one to use, as its "
        "folder names end (e.g. width_16k_l0_small_affine)",
    )

    def validate(self) -> None:
        """Refuse a window on per-layer transcoders, a warmup longer than the training, a variant of nothing."""
        if self.per_layer and self.window not in (None, 0):
            raise OptionError(
                f"--clt-train-per-layer writes each feature's own layer only; drop it or "
                f"--clt-train-window {self.window}."
            )
        if self.warmup > 1:
            raise OptionError(f"--clt-train-warmup is a share of the steps, at most 1; got {self.warmup}.")
        if self.load_variant and not self.load:
            raise OptionError(
                "--clt-train-load-variant picks a variant of the folder --clt-train-load names; give that folder too."
            )
