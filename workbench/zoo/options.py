"""The settings of a zoo model, defined once (:mod:`workbench.options`): the command line
``workbench zoo train`` is generated from them, and their fingerprint keys a run's checkpoints.

The defaults are sized so that a whole preset trains in under an hour on 2 CPU cores (measured:
see README, "Model zoo").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

from workbench.options import Options, OptionError, option

DEFAULT_MIXTURE = "en=0.5,fr=0.125,de=0.125,ar=0.125,zh=0.125"
RUN_ONLY = ("device", "checkpoint_every")  # where and how often: they never change the weights


@dataclass(frozen=True)
class ZooOptions(Options):
    """What a zoo model is: its mixture, size, budget and seed (and where it trains)."""

    TITLE: ClassVar[str] = "model"

    mixture: str = option(DEFAULT_MIXTURE, "shares of training tokens, LANG=SHARE,... (normalised; 0 allowed)")
    layers: int = option(4, "transformer blocks", minimum=1)
    d_model: int = option(256, "residual stream width", minimum=8)
    heads: int = option(4, "attention heads (d_model must be a multiple)", minimum=1)
    d_mlp: int = option(768, "gated MLP width", minimum=1)
    context: int = option(128, "tokens per training sequence (and the model's context)", minimum=8)
    vocab_size: int = option(8192, "BPE vocabulary of the family tokenizer", minimum=300)
    tokenizer_languages: tuple[str, ...] = option((), "languages of the family tokenizer (default: the mixture's)")
    tokens: int = option(1_600_000, "training token budget (predicted tokens)", minimum=1)
    batch_tokens: int = option(8192, "predicted tokens per optimiser step", minimum=1)
    lr: float = option(2e-3, "peak learning rate (AdamW; linear warm-up, cosine decay to 10%)", minimum=0.0)
    warmup: int = option(30, "warm-up steps", minimum=0)
    max_epochs: float = option(1.0, "most passes over any language's training text (repeats must be asked for)",
                               minimum=0.0)  # fmt: skip
    heldout_verses: int = option(200, "held-out verses per language for the held-out loss", minimum=1)
    seed: int = option(0, "seed of the initial weights and the data order")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    checkpoint_every: int = option(25, "optimiser steps between checkpoints (an interruption loses at most these)",
                                   minimum=1)  # fmt: skip

    def validate(self) -> None:
        if self.d_model % self.heads:
            raise OptionError(f"--d-model {self.d_model} is not a multiple of --heads {self.heads}.")
        if (self.d_model // self.heads) % 2:
            raise OptionError(f"Rotary needs an even head size; --d-model / --heads is {self.d_model // self.heads}.")
        if self.batch_tokens < self.context:
            raise OptionError(f"--batch-tokens {self.batch_tokens} is below --context {self.context}; "
                              "a step holds at least one sequence.")  # fmt: skip
        object.__setattr__(self, "tokenizer_languages", tuple(dict.fromkeys(x.lower() for x in self.tokenizer_languages)))

    def identity(self) -> dict:
        """The settings that decide the weights (not the device or checkpoint interval)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY}

    def weights_fingerprint(self) -> str:
        """A hash of :meth:`identity`: a checkpoint resumes only a run that would make the same weights."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
