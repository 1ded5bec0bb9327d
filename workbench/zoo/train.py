"""Training a zoo model: a small Llama-architecture causal LM (RMSNorm, rotary, gated MLP, which
TransformerLens converts natively, so every analysis, Q/K PLND included, runs on it) trained from
scratch on a language mixture of the Bible corpus's training verses.

The run is a pure function of its settings (:class:`~workbench.zoo.options.ZooOptions`): the
initial weights come from the seed, sequence ``i`` of the :class:`~workbench.zoo.data.SequencePlan`
from the mixture and the seed, and the learning rate from the step. So a checkpoint (weights,
optimiser state, step, losses) is all a resumed run needs to continue exactly where an
uninterrupted run would be. The finished model is a standard Hugging Face folder (config,
safetensors, tokenizer) plus ``zoo.json``, its manifest.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.corpus import BibleCorpus
from workbench.errors import WorkbenchError
from workbench.results import environment, save_json
from workbench.zoo.catalog import MANIFEST, ZOO_FORMAT, trained, zoo_root
from workbench.zoo.data import SequencePlan, available_languages, language_stream
from workbench.zoo.mixture import Mixture, MixtureError
from workbench.zoo.options import ZooOptions
from workbench.zoo.tokenizer import family_tokenizer

CHECKPOINT = "checkpoint.pt"


class ZooExistsError(WorkbenchError, FileExistsError):
    """A zoo name that is taken (by a trained model, or by a run with other settings)."""


def plan_run(options: ZooOptions, zoo: Path):
    """Everything a run reads, checked before any training: ``(mixture, tokenizer, tokenizer
    folder, streams, plan)``. Bad mixtures and budgets fail here, in seconds."""
    mixture = Mixture.parse(options.mixture, available_languages())
    languages = list(options.tokenizer_languages) or mixture.languages
    missing = [lang for lang in mixture.languages if lang not in languages]
    if missing:
        raise MixtureError(f"--tokenizer-languages lacks {', '.join(missing)} of the mixture; add them.")
    BibleCorpus().check_languages(languages)
    tokenizer, folder = family_tokenizer(languages, options.vocab_size, zoo)
    streams = {lang: language_stream(tokenizer, lang, folder / "streams") for lang in mixture.trained}
    n_sequences = math.ceil(options.tokens / options.context)
    plan = SequencePlan.build(mixture, {k: len(v) for k, v in streams.items()}, options.context, n_sequences,
                              options.seed, options.max_epochs)  # fmt: skip
    return mixture, tokenizer, folder, streams, plan


def build_model(options: ZooOptions, tokenizer):
    """A freshly initialised ``LlamaForCausalLM`` of the options' size (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=options.d_model, intermediate_size=options.d_mlp,
        num_hidden_layers=options.layers, num_attention_heads=options.heads, num_key_value_heads=options.heads,
        max_position_embeddings=options.context, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(options.seed)
    return LlamaForCausalLM(config)


def learning_rate(options: ZooOptions, step: int, steps: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to a tenth of it at the last step."""
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, steps - options.warmup)
    return options.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(name: str, options: ZooOptions, zoo: Path | None = None, force: bool = False, show_progress: bool = True,
          on_step: Callable[[int, float], None] | None = None) -> Path:  # fmt: skip
    """Train (or resume) the zoo model ``name``; returns its folder. ``on_step(step, loss)`` is
    called after each optimiser step (and after its checkpoint, when one is due)."""
    zoo = zoo or zoo_root()
    folder, work = check_name(name, zoo, force)
    mixture, tokenizer, tokenizer_folder, streams, plan = plan_run(options, zoo)
    per_step = max(1, options.batch_tokens // options.context)
    steps = math.ceil(len(plan.language_of) / per_step)
    model = build_model(options, tokenizer).to(options.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, betas=(0.9, 0.95), weight_decay=0.1)
    state = resume(work, options, model, optimizer)
    model.train()
    with tqdm(total=steps, initial=state["step"], desc=f"zoo {name}", unit="step", disable=not show_progress) as bar:
        while state["step"] < steps:
            started = time.perf_counter()
            step = state["step"]
            batch = torch.from_numpy(plan.batch(range(step * per_step, min((step + 1) * per_step, len(plan.language_of))),
                                                streams, tokenizer.bos_token_id)).to(options.device)  # fmt: skip
            loss = training_step(model, optimizer, batch, learning_rate(options, step, steps))
            state["step"] += 1
            state["losses"].append(loss)
            state["seconds"] += time.perf_counter() - started
            if state["step"] % options.checkpoint_every == 0 or state["step"] == steps:
                save_checkpoint(work, options, model, optimizer, state)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{batch[:, 1:].numel() / (time.perf_counter() - started):,.0f}")
            if on_step is not None:
                on_step(state["step"], loss)
    model.eval()
    from workbench.zoo.evaluate import heldout_losses

    held = heldout_losses(model, tokenizer, mixture.languages, options.heldout_verses, options.context, options.device)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    save_json(work / "model" / MANIFEST, manifest(name, options, mixture, plan, model, tokenizer_folder, state, held))
    if folder.exists():
        shutil.rmtree(folder)
    (work / "model").rename(folder)
    shutil.rmtree(work)
    return folder


def trained_twin(options: ZooOptions, zoo: Path) -> str | None:
    """The name of a trained zoo model with the same weight-deciding settings as ``options``, if
    any: training is a pure function of those, so its weights are the ones a new run would make
    (on the same kind of device; the manifest says which)."""
    wanted = json.loads(json.dumps(options.identity()))
    return next((name for name, info in trained(zoo).items() if info["options"] == wanted), None)


def copy_twin(name: str, twin: str, zoo: Path) -> Path:
    """Make zoo model ``name`` a copy of its trained twin (manifest renamed, ``copy_of`` set)."""
    folder, work = check_name(name, zoo, force=False)
    shutil.copytree(zoo / twin, work / "model")
    info = json.loads((work / "model" / MANIFEST).read_text(encoding="utf-8"))
    save_json(work / "model" / MANIFEST, {**info, "name": name, "copy_of": twin})
    (work / "model").rename(folder)
    shutil.rmtree(work)
    return folder


def manifest(name: str, options: ZooOptions, mixture: Mixture, plan: SequencePlan, model, tokenizer_folder: Path,
             state: dict, heldout: dict[str, float]) -> dict:  # fmt: skip
    """``zoo.json``: what made the model (settings, mixture, tokens and passes per language, the
    tokenizer), how training went (steps, time, every step's loss) and its held-out loss."""
    counts = plan.sequences_per_language()
    tokens = sum(counts.values()) * options.context
    return {
        "format": ZOO_FORMAT, "name": name, "options": options.identity(), "mixture": str(mixture),
        "architecture": "LlamaForCausalLM", "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": {"key": tokenizer_folder.name, "languages": list(options.tokenizer_languages) or mixture.languages,
                      "vocab_size": model.config.vocab_size},
        "tokens": {"total": tokens, "per_language": {lang: n * options.context for lang, n in counts.items()}},
        "epochs": {lang: round(e, 4) for lang, e in plan.epochs().items()},
        "steps": len(state["losses"]), "seconds": round(state["seconds"], 1),
        "tokens_per_second": round(tokens / max(state["seconds"], 1e-9), 1), "device": options.device,
        "losses": [round(x, 5) for x in state["losses"]], "heldout_loss": heldout,
        "versions": environment(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def training_step(model, optimizer, batch: torch.Tensor, lr: float) -> float:
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
    """``(folder, work folder)`` of ``name``; a trained model of that name is refused unless
    ``force`` (which also drops an unfinished run's checkpoint)."""
    if not name or "/" in name or name.startswith("."):
        raise WorkbenchError(f"Zoo name {name!r} must be a plain folder name, e.g. mix-en50.")
    folder, work = zoo / name, zoo / f".{name}.partial"
    if force:
        shutil.rmtree(work, ignore_errors=True)
    elif (folder / MANIFEST).exists():
        raise ZooExistsError(f"Zoo model {name!r} exists ({folder}); pass --force to train it again, or pick another name.")
    work.mkdir(parents=True, exist_ok=True)
    return folder, work


def save_checkpoint(work: Path, options: ZooOptions, model, optimizer, state: dict) -> None:
    """Weights, optimiser state, step and losses, written atomically (tensors and numbers only)."""
    partial = work / f"{CHECKPOINT}.tmp"
    torch.save({"fingerprint": options.weights_fingerprint(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), **state}, partial)  # fmt: skip
    partial.replace(work / CHECKPOINT)


def resume(work: Path, options: ZooOptions, model, optimizer) -> dict:
    """The state to start from: a checkpoint of a run with the same settings, or step 0."""
    path = work / CHECKPOINT
    if not path.exists():
        return {"step": 0, "losses": [], "seconds": 0.0}
    saved = torch.load(path, map_location=options.device, weights_only=True)
    if saved["fingerprint"] != options.weights_fingerprint():
        raise ZooExistsError(f"{work} holds an unfinished run with other settings; re-run with those settings "
                             "to resume it, or pass --force to start over.")  # fmt: skip
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return {"step": saved["step"], "losses": list(saved["losses"]), "seconds": saved["seconds"]}


__all__ = ["ZooExistsError", "build_model", "copy_twin", "learning_rate", "plan_run", "train", "trained_twin"]
