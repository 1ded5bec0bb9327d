"""The fine-tuned model of the clt-diff slice: a finetune delta applied to the run's model, or another model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.analyses.clt_diff.options import Options
from workbench.errors import WorkbenchError
from workbench.models.model import Model
from workbench.runs.store import Store

SHAPE_KEYS = (
    "n_layers",
    "d_model",
    "d_vocab",
    "d_mlp",
    "n_heads",
    "gated_mlp",
    "normalization_type",
    "act_fn",
    "positional_embedding_type",
)
"""What a fine-tune must share with the run's model (its config's fields) for the base transcoder to read it."""


@contextmanager
def tuned_model(spec: str, model: Model, store: Store) -> Iterator[tuple[Model, str]]:
    """The fine-tuned model for the block, and the language it was fine-tuned on ("" where unknown).

    A delta (``.safetensors``) is applied to ``model`` by parametrization for the block only (its
    metadata names the language); anything else is loaded as a model.

    Raises:
        WorkbenchError: The delta is missing or made for another model, or the model differs from
            the run's in shape or tokenizer.
    """
    path = Path(spec)
    if path.suffix == ".safetensors":
        from workbench.interventions.finetune import NeuronDelta

        if not path.is_file():
            raise WorkbenchError(f"No delta file {path}; finetune deltas are under RESULTS/parts/finetune-*/deltas/.")
        delta = NeuronDelta.load(path)
        try:
            delta.check_fits(model)
        except ValueError as exc:
            raise WorkbenchError(f"{exc} Run clt-diff with --model the base model the delta was trained on.") from None
        with delta.applied(model):
            yield model, str(delta.meta.get("target", ""))
        return
    from workbench.models.loading import load_model

    other = load_model(spec, device=store.run.device)
    check_same_shape(model, other, spec)
    yield other, ""


def run_delta(options: Options, store: Store) -> Path:
    """The delta of this run's finetune of ``options.finetune_language``'s neurons, trained on the most documents.

    The language defaults to the finetune's first target.

    Raises:
        WorkbenchError: The finetune saved no delta of that language (or the run has no folder).
    """
    finetune = store.result("finetune")
    runs = [r for r in finetune.runs if r.kind == "language" and r.delta_file]
    language = options.finetune_language or (runs[0].target if runs else "")
    mine = [r for r in runs if r.target == language]
    if not mine or store.folder is None:
        raise WorkbenchError(
            f"This run's finetune saved no delta of {language or 'any language'}'s neurons "
            f"(trained: {', '.join(sorted({r.target for r in runs})) or 'none'}); add it with "
            f"--finetune-languages {language or 'LANG'}, and give the run an --out folder."
        )
    return Path(store.folder) / max(mine, key=lambda r: r.size).delta_file


def check_same_shape(model: Model, other: Model, spec: str) -> None:
    """Refuse a model the base transcoder cannot read: another shape, or another tokenizer.

    Raises:
        WorkbenchError: ``other`` (named ``spec``) differs from ``model`` in a
            [`SHAPE_KEYS`][workbench.analyses.clt_diff.tuned.SHAPE_KEYS] field or in how it tokenizes text.
    """
    differ = [k for k in SHAPE_KEYS if getattr(model.cfg, k) != getattr(other.cfg, k)]
    if differ:
        raise WorkbenchError(
            f"{spec} differs from the run's model in {', '.join(differ)}; the base transcoder reads "
            "only a fine-tune of the run's model (same shape and tokenizer)."
        )
    sample = "In the beginning God created the heaven and the earth."
    if (
        other.tokenizer is not None
        and model.tokenizer is not None
        and other.to_tokens(sample).tolist() != model.to_tokens(sample).tolist()
    ):
        raise WorkbenchError(
            f"{spec} tokenizes text differently from the run's model; diff a fine-tune of the same model."
        )
