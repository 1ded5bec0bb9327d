"""Training a zoo model: a small Llama-architecture causal LM, from scratch, on a language mixture.

The architecture (RMSNorm, rotary, gated MLP) is one TransformerLens converts natively, so every
analysis, Q/K PLND included, runs on it; the mixture is of the Bible corpus's training verses.

The run is a pure function of its settings ([`ZooOptions`][workbench.zoo.options.ZooOptions]): the
initial weights come from the seed, sequence ``i`` of the [`SequencePlan`][workbench.zoo.data.SequencePlan]
from the mixture and the seed, and the learning rate from the step. So a checkpoint (weights,
optimiser state, step, losses; [`workbench.zoo.checkpoint`][workbench.zoo.checkpoint]) is all a
resumed run needs to continue exactly where an uninterrupted run would be. The finished model is a
standard Hugging Face folder (config, safetensors, tokenizer) plus ``zoo.json``, its manifest
([`workbench.zoo.manifest`][workbench.zoo.manifest]).

A *fine-tune* (``options.base`` set) is the same run starting from a trained zoo model's weights
instead of the seed's: it keeps the base's shape and family tokenizer (so token ids and layers
match, and the two models can be diffed), and its checkpoints and manifest name the base's exact
weights (a SHA-256 of its safetensors), so a base trained again under the same name is never
mixed in.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from tqdm.auto import tqdm

from workbench.data.corpus import BibleCorpus
from workbench.models.catalog import MANIFEST, zoo_root
from workbench.runs.results import save_json
from workbench.zoo.checkpoint import check_name, resume, run_fingerprint, save_checkpoint
from workbench.zoo.data import SequencePlan, available_languages, language_stream
from workbench.zoo.manifest import base_record, check_base, manifest
from workbench.zoo.mixture import Mixture, MixtureError
from workbench.zoo.options import ZooOptions
from workbench.zoo.tokenizer import family_tokenizer

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase


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


def start_model(options: ZooOptions, tokenizer: PreTrainedTokenizerBase, zoo: Path) -> LlamaForCausalLM:
    """The model step 0 starts from: the base's trained weights for a fine-tune, else fresh seeded ones."""
    if not options.base:
        return build_model(options, tokenizer)
    from transformers import LlamaForCausalLM

    torch.manual_seed(options.seed)
    return LlamaForCausalLM.from_pretrained(str(zoo / options.base), dtype=torch.float32)


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


__all__ = [
    "build_model",
    "learning_rate",
    "plan_run",
    "start_model",
    "train",
    "training_step",
]
