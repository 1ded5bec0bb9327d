"""``workbench export``: a fine-tuned model (a finetune delta on its base) as a full state dict."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.runs.options import RunOptions


def cmd_export(args: argparse.Namespace) -> int:
    """``workbench export DELTA``: the base model with a finetune delta applied, as one state dict."""
    from workbench.interventions.finetune import NeuronDelta
    from workbench.models.loading import load_model

    path = Path(args.delta)
    if not path.is_file():
        raise WorkbenchError(f"No delta file {path}; finetune deltas are in RESULTS/finetune/*.safetensors.")
    delta = NeuronDelta.load(path)
    model = load_model(args.model)
    try:
        delta.check_fits(model)
    except ValueError as exc:
        raise WorkbenchError(f"{exc} Pass the base model it was trained on with --model.") from None
    out = delta.export(model, Path(args.out))
    print(
        f"Wrote {out.resolve()} ({delta.n_parameters:,} parameters differ from {args.model}); "
        "load it with HookedTransformer(cfg).load_state_dict(safetensors.torch.load_file(PATH))."
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``export``."""
    export = sub.add_parser(
        "export", help="write a fine-tuned model (a finetune delta on its base model) as a full state dict"
    )
    export.add_argument("delta", help="a .safetensors delta of a finetune run (see its finetune.json)")
    export.add_argument("--model", default=RunOptions.model, help="the base model the delta was trained on")
    export.add_argument("--out", required=True, help="output .safetensors file")
    export.set_defaults(func=cmd_export)
