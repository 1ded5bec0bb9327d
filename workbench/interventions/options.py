"""Settings of the interventions, defined once: deactivation, neuron training, and enhancement around it.

They live with the experiments that read them; the ``ablate`` and ``finetune`` slices expose them
as their ``Options`` (the command line is generated from them). Importing this module imports no
torch, so the command line can check them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.neurons.selection import SET_KINDS
from workbench.runs.options import OptionError, RunOptions, among_run, option
from workbench.runs.options import Options as Base

GROUPS: tuple[str, ...] = ("all", "understanding", "task_attention", "task_ffn", "generation")
"""MWork's layer groups (``all``: every layer), as ``--ablate-groups`` takes them."""
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ru", "ja", "ar")
"""The paper's languages: the ``paper`` preset's deactivation languages, when the run has them."""


@dataclass(frozen=True)
class DeactivationOptions(Base):
    """Whose neurons are switched off, which sets, layer groups and controls, and how much is measured.

    ``sets``: ``plnd`` (PLND's sets, which include the neurons every language shares),
    ``exclusive`` (those sets minus the shared neurons), ``lape`` (LAPE's FFN sets); each kind
    is its own experiment, side by side in the report.
    """

    ANALYSIS: ClassVar[str] = "ablate"
    PRESETS: ClassVar[dict[str, dict]] = {
        "paper": {
            "languages": LANGUAGES,
            "documents": 12,
            "sets": ("plnd",),
            "groups": GROUPS,
            "seeds": 3,
            "new_tokens": 16,
        },
    }

    languages: tuple[str, ...] = option(
        (), "languages switched off and measured (default: the run's among en,de,zh,sw, else its first 4)"
    )
    documents: int = option(6, "held-out verses per language", minimum=1)
    sets: tuple[str, ...] = option(
        ("plnd", "exclusive"), "neuron sets to switch off, one experiment each", each_of=SET_KINDS
    )
    groups: tuple[str, ...] = option(("all",), "layer groups (MWork), 'all' always included", each_of=GROUPS)
    seeds: int = option(1, "count-matched random control sets per setting", minimum=1)
    understanding: int | None = option(None, "MWork understanding layers (auto: the first quarter)", minimum=0)
    generation: int | None = option(None, "MWork generation layers (auto: the last eighth)", minimum=0)
    prompt_tokens: int = option(8, "continuation prompts: the first tokens of each verse", minimum=2)
    new_tokens: int = option(8, "greedy continuation length (0: none)", minimum=0)

    DEMO_LANGUAGES: ClassVar[tuple[str, ...]] = ("en", "de", "zh", "sw")

    def validate(self) -> None:
        """Refuse groups without ``all`` and an empty list of sets."""
        if "all" not in self.groups:
            raise OptionError("--ablate-groups must include 'all' (the whole set, used by every table).")
        if not self.sets:
            raise OptionError("--ablate-sets is empty; give plnd, exclusive or lape.")

    def check_run(self, run: RunOptions) -> None:
        """Refuse languages the run does not have."""
        self.language_list(list(run.languages))

    def language_list(self, run_languages: list[str]) -> list[str]:
        """The experiment's languages: as given (each must be among the run's), or the default."""
        if self.languages:
            return among_run(self.languages, run_languages, self.flag("languages"))
        return [lang for lang in run_languages if lang in self.DEMO_LANGUAGES] or run_languages[:4]


TARGETS: tuple[str, ...] = ("de", "sw")
"""The default targets: a high- and a lower-resource language (MWork Fig. 4, Table 6)."""


@dataclass(frozen=True)
class TrainOptions:
    """Causal-LM training of a neuron set (AdamW on its entries only, constant learning rate).

    The paper gives no optimiser settings; these defaults are ours. ``batch_tokens`` bounds the
    padded tokens per optimiser step.
    """

    epochs: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_tokens: int = 512
    biases: bool | None = None  # None: only where the model has non-zero biases
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.batch_tokens < 2:
            raise ValueError("Training needs epochs >= 1, lr > 0 and batch_tokens >= 2.")


@dataclass(frozen=True)
class EnhancementOptions(Base):
    """Which languages' neurons are trained on how many documents, the random control, training."""

    ANALYSIS: ClassVar[str] = "finetune"
    # the Gemma transcoder study diffs one fine-tune (the run's first target) through its transcoders
    PRESETS: ClassVar[dict[str, dict]] = {"gemma-clt": {"sizes": (400,), "random_size": 0}}

    languages: tuple[str, ...] = option(
        (),
        "languages whose neurons are trained (default: de and sw among "
        "the run's languages, else its first non-English one)",
    )
    eval_languages: tuple[str, ...] = option(
        (), "languages measured before and after (default: the deactivation languages plus the targets)"
    )
    sizes: tuple[int, ...] = option((100, 200, 400, 800), "training documents per run (nested samples)", minimum=1)
    random_size: int = option(400, "training documents of the random-neuron control (0: none)", minimum=0)
    sets: str = option("plnd", "which neuron sets to train", choices=SET_KINDS)
    documents: int = option(16, "held-out verses per evaluated language", minimum=1)
    epochs: int = option(TrainOptions.epochs, "passes over the training documents", minimum=1)
    lr: float = option(TrainOptions.lr, "AdamW learning rate (constant)")
    batch_tokens: int = option(TrainOptions.batch_tokens, "padded tokens per training step", minimum=2)

    def validate(self) -> None:
        """Refuse an empty list of sizes and a learning rate that is not positive."""
        if not self.sizes:
            raise OptionError("--finetune-sizes is empty; give training sizes such as 100,200,400.")
        if self.lr <= 0:
            raise OptionError(f"--finetune-lr must be positive; got {self.lr}.")

    def check_run(self, run: RunOptions) -> None:
        """Refuse targets and evaluated languages the run does not have."""
        self.targets(list(run.languages))
        among_run(self.eval_languages, list(run.languages), self.flag("eval_languages"))

    @property
    def documents_needed(self) -> int:
        """Training documents a target needs: the largest run's."""
        return max(max(self.sizes), self.random_size)

    def train(self, seed: int) -> TrainOptions:
        """The training settings of every run, seeded."""
        return TrainOptions(epochs=self.epochs, lr=self.lr, batch_tokens=self.batch_tokens, seed=seed)

    def targets(self, run_languages: list[str]) -> list[str]:
        """The languages whose neurons are trained: as given, else de and sw, else the first non-English one."""
        if self.languages:
            return among_run(self.languages, run_languages, self.flag("languages"))
        chosen = [lang for lang in run_languages if lang in TARGETS]
        return chosen or [lang for lang in run_languages if lang != "en"][:1]

    def evaluated(self, run_languages: list[str], default: list[str]) -> list[str]:
        """The languages measured: as given (else ``default``), then the targets."""
        chosen = among_run(self.eval_languages, run_languages, self.flag("eval_languages")) or default
        return list(dict.fromkeys([*chosen, *self.targets(run_languages)]))
