"""The settings of a zoo model, defined once ([`workbench.runs.options`][workbench.runs.options]).

The command lines ``workbench zoo train`` and ``workbench zoo finetune`` are generated from them,
and their fingerprint keys a run's checkpoints.

The defaults are sized so that a whole preset trains in under an hour on 2 CPU cores (measured:
see README, "Model zoo").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar, cast

from workbench.runs.options import OptionError, Options, option

DEFAULT_MIXTURE = "en=0.5,fr=0.125,de=0.125,ar=0.125,zh=0.125"
"""Half English, the rest split evenly over French, German, Arabic and Chinese."""
RUN_ONLY = ("device", "checkpoint_every")
"""Where and how often a run trains: settings that never change the weights."""
SHAPE = ("layers", "d_model", "heads", "d_mlp", "context", "vocab_size")
"""The settings of a model's shape, which a fine-tune keeps from its base."""
FINETUNE_DEFAULTS = {"tokens": 200_000, "lr": 5e-4, "warmup": 5}
"""A short, gentle run from trained weights."""


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
    lr: float = option(2e-3, "peak learning rate (AdamW; linear warm-up, cosine decay to a tenth)", minimum=0.0)
    warmup: int = option(30, "warm-up steps", minimum=0)
    max_epochs: float = option(
        1.0, "most passes over any language's training text (repeats must be asked for)", minimum=0.0
    )
    heldout_verses: int = option(200, "held-out verses per language for the held-out loss", minimum=1)
    seed: int = option(0, "seed of the initial weights and the data order")
    base: str = option(
        "", "zoo model whose trained weights this run starts from (fine-tuning); its shape and tokenizer are used"
    )
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    checkpoint_every: int = option(
        25, "optimiser steps between checkpoints (an interruption loses at most these)", minimum=1
    )

    def validate(self) -> None:
        """Refuse a shape that cannot be built and a step shorter than a sequence; tidy the tokenizer languages."""
        if self.d_model % self.heads:
            raise OptionError(f"--d-model {self.d_model} is not a multiple of --heads {self.heads}.")
        if (self.d_model // self.heads) % 2:
            raise OptionError(f"Rotary needs an even head size; --d-model / --heads is {self.d_model // self.heads}.")
        if self.batch_tokens < self.context:
            raise OptionError(
                f"--batch-tokens {self.batch_tokens} is below --context {self.context}; "
                "a step holds at least one sequence."
            )
        object.__setattr__(
            self, "tokenizer_languages", tuple(dict.fromkeys(x.lower() for x in self.tokenizer_languages))
        )

    def identity(self) -> dict:
        """The settings that decide the weights (not the device or checkpoint interval).

        ``base`` only when set, so a model trained from scratch keeps the identity (and
        fingerprint) it had before fine-tuning existed.
        """
        return {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY and (k != "base" or v)}

    def weights_fingerprint(self) -> str:
        """A hash of [`identity`][workbench.zoo.options.ZooOptions.identity].

        A checkpoint resumes only a run that would make the same weights.
        """
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def finetune_options(base: str, manifest: dict, given: dict) -> ZooOptions:
    """The settings of a fine-tune of zoo model ``base``, whose ``zoo.json`` is ``manifest``.

    The base's settings and tokenizer languages,
    [`FINETUNE_DEFAULTS`][workbench.zoo.options.FINETUNE_DEFAULTS], the base's seed + 1 (so it
    reads other sequences than the base's first ones), then ``given`` (what the command line set,
    ``mixture`` among it), which wins.

    Raises:
        OptionError: ``given`` has no mixture.
    """
    if "mixture" not in given:
        raise OptionError(f"Say what to fine-tune zoo:{base} on: --language LANG, or --mixture LANG=SHARE,...")
    start = {
        **manifest["options"],
        "tokenizer_languages": tuple(manifest["tokenizer"]["languages"]),
        "seed": manifest["options"]["seed"] + 1,
        **FINETUNE_DEFAULTS,
        "base": base,
    }
    return cast(ZooOptions, ZooOptions.from_dict({**start, **given}))  # from_dict builds the class it is called on
