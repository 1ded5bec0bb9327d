"""A trained zoo model's folder: its manifest ``zoo.json``, and what reads it back.

A finished model is a standard Hugging Face folder (config, safetensors, tokenizer) plus
``zoo.json``: what made the model, how training went and its held-out loss
([`manifest`][workbench.zoo.manifest.manifest]). Manifests are what a fine-tune checks its base
against (same shape and family tokenizer; the base's exact weights recorded by their SHA-256), and
what finds a *twin*: a trained model with the same weight-deciding settings, copied under a new
name instead of trained again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import UnknownModelError, WorkbenchError
from workbench.models.catalog import MANIFEST, ZOO_FORMAT, trained
from workbench.runs.results import environment, save_json
from workbench.zoo.checkpoint import CHECKPOINT, check_name
from workbench.zoo.data import SequencePlan
from workbench.zoo.mixture import Mixture
from workbench.zoo.options import SHAPE, ZooOptions
from workbench.zoo.tokenizer import tokenizer_key

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM


def manifest(
    name: str,
    options: ZooOptions,
    mixture: Mixture,
    plan: SequencePlan,
    model: LlamaForCausalLM,
    tokenizer_folder: Path,
    state: dict[str, Any],
    heldout: dict[str, float],
    base: dict | None = None,
) -> dict:
    """``zoo.json``: what made the model, how training went, and its held-out loss.

    What made it: settings, mixture, tokens and passes per language, the tokenizer, and for a
    fine-tune its ``base``; how training went: steps, time, every step's loss.
    """
    counts = plan.sequences_per_language()
    tokens = sum(counts.values()) * options.context
    return {
        "format": ZOO_FORMAT,
        "name": name,
        "options": options.identity(),
        "mixture": str(mixture),
        "architecture": "LlamaForCausalLM",
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": {
            "key": tokenizer_folder.name,
            "languages": list(options.tokenizer_languages) or mixture.languages,
            "vocab_size": model.config.vocab_size,
        },
        "tokens": {"total": tokens, "per_language": {lang: n * options.context for lang, n in counts.items()}},
        "epochs": {lang: round(e, 4) for lang, e in plan.epochs().items()},
        "steps": len(state["losses"]),
        "seconds": round(state["seconds"], 1),
        "tokens_per_second": round(tokens / max(state["seconds"], 1e-9), 1),
        "device": options.device,
        "losses": [round(x, 5) for x in state["losses"]],
        "heldout_loss": heldout,
        **({"base": base} if base else {}),
        "versions": environment(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def base_manifest(name: str, zoo: Path) -> dict:
    """``zoo.json`` of the zoo model ``name`` a fine-tune starts from.

    One that is not trained (or whose run is unfinished) is refused with the command that trains it.
    """
    path = zoo / name / MANIFEST
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    if (zoo / f".{name}.partial" / CHECKPOINT).exists():
        fix = f"its run is unfinished; finish it with 'workbench zoo train {name}' and the settings it started with"
    else:
        fix = f"train it first with 'workbench zoo train {name} --mixture ...'"
    names = ", ".join(trained(zoo)) or "none yet"
    raise UnknownModelError(f"--base {name}: no trained zoo model {name!r} in {zoo} (trained: {names}); {fix}.")


def check_base(options: ZooOptions, languages: list[str], zoo: Path) -> dict:
    """The base's manifest, once the fine-tune is known to keep its shape and family tokenizer.

    The shape is [`SHAPE`][workbench.zoo.options.SHAPE]'s settings; ``languages`` are the
    fine-tune's tokenizer languages. Kept, they let the base's weights load and its token ids mean
    the same.
    """
    info = base_manifest(options.base, zoo)
    theirs, base_languages = info["options"], info["tokenizer"]["languages"]
    differ = [
        f"{ZooOptions.flag(k)} {getattr(options, k)} (base: {theirs[k]})"
        for k in SHAPE
        if getattr(options, k) != theirs[k]
    ]
    if sorted(languages) != sorted(base_languages):
        differ.append(f"--tokenizer-languages {','.join(languages)} (base: {','.join(base_languages)})")
    if differ:
        raise WorkbenchError(
            f"A fine-tune keeps the shape and tokenizer of its base zoo:{options.base}, but "
            f"{'; '.join(differ)}. Drop these options ('workbench zoo finetune' takes them from "
            f"the base), or train a new model with 'workbench zoo train'."
        )
    if tokenizer_key(languages, options.vocab_size) != info["tokenizer"]["key"]:
        raise WorkbenchError(
            f"The family tokenizer changed since zoo:{options.base} was trained "
            f"({info['tokenizer']['key']}); train the base again with 'workbench zoo train "
            f"{options.base} --force' and its settings."
        )
    return info


def base_record(name: str, zoo: Path) -> dict:
    """What a fine-tune's manifest says of its base: name, mixture, settings, held-out loss, weights.

    The weights are the SHA-256 of its weights file: which exact weights the fine-tune started from.
    """
    info = base_manifest(name, zoo)
    digest = hashlib.sha256((zoo / name / "model.safetensors").read_bytes()).hexdigest()
    return {
        "name": name,
        "mixture": info["mixture"],
        "options": info["options"],
        "heldout_loss": info["heldout_loss"],
        "weights_sha256": digest,
    }


def trained_twin(options: ZooOptions, zoo: Path) -> str | None:
    """The name of a trained zoo model with the same weight-deciding settings as ``options``, if any.

    Training is a pure function of those, so its weights are the ones a new run would make (on the
    same kind of device; the manifest says which). A fine-tune's twin also started from the same
    base weights.
    """
    wanted = json.loads(json.dumps(options.identity()))
    start = base_record(options.base, zoo)["weights_sha256"] if options.base else None
    return next(
        (
            name
            for name, info in trained(zoo).items()
            if info["options"] == wanted and (info.get("base") or {}).get("weights_sha256") == start
        ),
        None,
    )


def copy_twin(name: str, twin: str, zoo: Path) -> Path:
    """Make zoo model ``name`` a copy of its trained twin (manifest renamed, ``copy_of`` set)."""
    folder, work = check_name(name, zoo, force=False)
    shutil.copytree(zoo / twin, work / "model")
    info = json.loads((work / "model" / MANIFEST).read_text(encoding="utf-8"))
    save_json(work / "model" / MANIFEST, {**info, "name": name, "copy_of": twin})
    (work / "model").rename(folder)
    shutil.rmtree(work)
    return folder


__all__ = [
    "base_manifest",
    "base_record",
    "check_base",
    "copy_twin",
    "manifest",
    "trained_twin",
]
