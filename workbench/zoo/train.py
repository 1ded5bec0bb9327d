"""Training a zoo model: a small Llama-architecture causal LM, from scratch, on a language mixture.

The architecture (RMSNorm, rotary, gated MLP) is one TransformerLens converts natively, so every
analysis, Q/K PLND included, runs on it; the mixture is of the Bible corpus's training verses.

The run is a pure function of its settings ([`ZooOptions`][workbench.zoo.options.ZooOptions]): the
initial weights come from the seed, sequence ``i`` of the [`SequencePlan`][workbench.zoo.data.SequencePlan]
from the mixture and the seed, and the learning rate from the step. So a checkpoint (weights,
optimiser state, step, losses) is all a resumed run needs to continue exactly where an
uninterrupted run would be. The finished model is a standard Hugging Face folder (config,
safetensors, tokenizer) plus ``zoo.json``, its manifest.

A *fine-tune* (``options.base`` set) is the same run starting from a trained zoo model's weights
instead of the seed's: it keeps the base's shape and family tokenizer (so token ids and layers
match, and the two models can be diffed), and its checkpoints and manifest name the base's exact
weights (a SHA-256 of its safetensors), so a base trained again under the same name is never
mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.data.corpus import BibleCorpus
from workbench.errors import UnknownModelError, WorkbenchError
from workbench.models.catalog import MANIFEST, ZOO_FORMAT, trained, zoo_root
from workbench.runs.results import environment, save_json
from workbench.zoo.data import SequencePlan, available_languages, language_stream
from workbench.zoo.mixture import Mixture, MixtureError
from workbench.zoo.options import SHAPE, ZooOptions
from workbench.zoo.tokenizer import family_tokenizer, tokenizer_key

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

CHECKPOINT = "checkpoint.pt"
"""A run's checkpoint, in its work folder ``<zoo>/.NAME.partial/``."""


class ZooExistsError(WorkbenchError, FileExistsError):
    """A zoo name that is taken (by a trained model, or by a run with other settings)."""


def plan_run(
    options: ZooOptions, zoo: Path
) -> tuple[Mixture, PreTrainedTokenizerBase, Path, dict[str, Int[np.ndarray, " token"]], SequencePlan]:
    """Everything a run reads, checked before any training.

    Bad mixtures, tokenizers and budgets fail here, in seconds.

    Returns:
        ``(mixture, tokenizer, tokenizer folder, streams, plan)``: the streams are each trained
        language's tokens.
    """
    mixture = Mixture.parse(options.mixture, available_languages())
    languages = list(options.tokenizer_languages) or mixture.languages
    if options.base:
        check_base(options, languages, zoo)
    missing = [lang for lang in mixture.languages if lang not in languages]
    if missing and options.base:
        raise MixtureError(
            f"The tokenizer of zoo:{options.base} has no {', '.join(missing)} (it has "
            f"{', '.join(languages)}); fine-tune on those, or train a base that has them with "
            f"'workbench zoo train NAME --tokenizer-languages ...'."
        )
    if missing:
        raise MixtureError(f"--tokenizer-languages lacks {', '.join(missing)} of the mixture; add them.")
    BibleCorpus().check_languages(languages)
    tokenizer, folder = family_tokenizer(languages, options.vocab_size, zoo)
    streams = {lang: language_stream(tokenizer, lang, folder / "streams") for lang in mixture.trained}
    n_sequences = math.ceil(options.tokens / options.context)
    plan = SequencePlan.build(
        mixture, {k: len(v) for k, v in streams.items()}, options.context, n_sequences, options.seed, options.max_epochs
    )
    return mixture, tokenizer, folder, streams, plan


def build_model(options: ZooOptions, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` of the options' size (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=options.d_model,
        intermediate_size=options.d_mlp,
        num_hidden_layers=options.layers,
        num_attention_heads=options.heads,
        num_key_value_heads=options.heads,
        max_position_embeddings=options.context,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        hidden_act="silu",
        bos_token_id=_token_id(tokenizer, "bos"),
        eos_token_id=_token_id(tokenizer, "eos"),
        pad_token_id=_token_id(tokenizer, "pad"),
    )
    torch.manual_seed(options.seed)
    return LlamaForCausalLM(config)


def _token_id(tokenizer: PreTrainedTokenizerBase, name: str) -> int:
    """The id of the family tokenizer's special token ``<name>`` (it has every one of them)."""
    return cast(int, getattr(tokenizer, f"{name}_token_id"))


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


def start_model(options: ZooOptions, tokenizer: PreTrainedTokenizerBase, zoo: Path) -> LlamaForCausalLM:
    """The model step 0 starts from: the base's trained weights for a fine-tune, else fresh seeded ones."""
    if not options.base:
        return build_model(options, tokenizer)
    from transformers import LlamaForCausalLM

    torch.manual_seed(options.seed)
    return LlamaForCausalLM.from_pretrained(str(zoo / options.base), dtype=torch.float32)


def run_fingerprint(options: ZooOptions, base: dict | None) -> str:
    """What a checkpoint must match to be resumed: the settings, and a fine-tune's base weights."""
    return options.weights_fingerprint() + (f"+{base['weights_sha256'][:12]}" if base else "")


def learning_rate(options: ZooOptions, step: int, steps: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to a tenth of it at the last step."""
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, steps - options.warmup)
    return options.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(
    name: str,
    options: ZooOptions,
    zoo: Path | None = None,
    force: bool = False,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train (or resume) the zoo model ``name``; returns its folder.

    ``on_step(step, loss)`` is called after each optimiser step (and after its checkpoint, when one
    is due).
    """
    zoo = zoo or zoo_root()
    folder, work = check_name(name, zoo, force)
    mixture, tokenizer, tokenizer_folder, streams, plan = plan_run(options, zoo)
    base = base_record(options.base, zoo) if options.base else None
    fingerprint = run_fingerprint(options, base)
    per_step = max(1, options.batch_tokens // options.context)
    steps = math.ceil(len(plan.language_of) / per_step)
    model = start_model(options, tokenizer, zoo)
    model = model.to(options.device)  # pyright: ignore[reportArgumentType]  # transformers' @wraps loses self
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, betas=(0.9, 0.95), weight_decay=0.1)
    state = resume(work, options, fingerprint, model, optimizer)
    model.train()
    with tqdm(total=steps, initial=state["step"], desc=f"zoo {name}", unit="step", disable=not show_progress) as bar:
        while state["step"] < steps:
            started = time.perf_counter()
            step = state["step"]
            batch = _batch(plan, streams, _token_id(tokenizer, "bos"), step, per_step, options.device)
            loss = training_step(model, optimizer, batch, learning_rate(options, step, steps))
            state["step"] += 1
            state["losses"].append(loss)
            state["seconds"] += time.perf_counter() - started
            if state["step"] % options.checkpoint_every == 0 or state["step"] == steps:
                save_checkpoint(work, fingerprint, model, optimizer, state)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{batch[:, 1:].numel() / (time.perf_counter() - started):,.0f}")
            if on_step is not None:
                on_step(state["step"], loss)
    model.eval()
    from workbench.zoo.evaluate import heldout_losses

    # a fine-tune: the base's languages too
    evaluated = list(dict.fromkeys([*mixture.languages, *(base["heldout_loss"] if base else ())]))
    held = heldout_losses(model, tokenizer, evaluated, options.heldout_verses, options.context, options.device)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    save_json(
        work / "model" / MANIFEST, manifest(name, options, mixture, plan, model, tokenizer_folder, state, held, base)
    )
    if folder.exists():
        shutil.rmtree(folder)
    (work / "model").rename(folder)
    shutil.rmtree(work)
    return folder


def _batch(
    plan: SequencePlan,
    streams: dict[str, Int[np.ndarray, " token"]],
    bos: int,
    step: int,
    per_step: int,
    device: str,
) -> Int[torch.Tensor, "batch pos"]:
    """The sequences of optimiser step ``step``: ``per_step`` of the plan's (fewer at its end), on ``device``."""
    indices = range(step * per_step, min((step + 1) * per_step, len(plan.language_of)))
    return torch.from_numpy(plan.batch(indices, streams, bos)).to(device)


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


def training_step(
    model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, batch: Int[torch.Tensor, "batch pos"], lr: float
) -> float:
    """One AdamW step on ``batch [n, context + 1]`` (inputs ``[:, :-1]``, targets ``[:, 1:]``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(input_ids=batch[:, :-1]).logits
    loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def check_name(name: str, zoo: Path, force: bool) -> tuple[Path, Path]:
    """``(folder, work folder)`` of ``name``.

    A trained model of that name is refused unless ``force`` (which also drops an unfinished run's
    checkpoint).
    """
    if not name or "/" in name or name.startswith("."):
        raise WorkbenchError(f"Zoo name {name!r} must be a plain folder name, e.g. mix-en50.")
    folder, work = zoo / name, zoo / f".{name}.partial"
    if force:
        shutil.rmtree(work, ignore_errors=True)
    elif (folder / MANIFEST).exists():
        raise ZooExistsError(
            f"Zoo model {name!r} exists ({folder}); pass --force to train it again, or pick another name."
        )
    work.mkdir(parents=True, exist_ok=True)
    return folder, work


def save_checkpoint(
    work: Path, fingerprint: str, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Weights, optimiser state, step and losses, written atomically (tensors and numbers only).

    Saved under the run's [`run_fingerprint`][workbench.zoo.train.run_fingerprint].
    """
    partial = work / f"{CHECKPOINT}.tmp"
    torch.save(
        {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(), **state}, partial
    )
    partial.replace(work / CHECKPOINT)


def resume(
    work: Path, options: ZooOptions, fingerprint: str, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """The state to start from: a checkpoint of a run with the same settings (and base weights), or step 0."""
    path = work / CHECKPOINT
    if not path.exists():
        return {"step": 0, "losses": [], "seconds": 0.0}
    saved = torch.load(path, map_location=options.device, weights_only=True)
    if saved["fingerprint"] != fingerprint:
        raise ZooExistsError(
            f"{work} holds an unfinished run with other settings (or another base's weights); "
            "re-run with those settings to resume it, or pass --force to start over."
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return {"step": saved["step"], "losses": list(saved["losses"]), "seconds": saved["seconds"]}


__all__ = [
    "ZooExistsError",
    "base_manifest",
    "build_model",
    "copy_twin",
    "learning_rate",
    "plan_run",
    "train",
    "trained_twin",
]
