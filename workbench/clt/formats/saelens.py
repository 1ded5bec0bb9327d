"""Per-layer transcoders to and from SAELens's transcoder folders, one folder per layer.

SAELens (6.54, ``sae_lens/saes/transcoder.py``) saves a ``JumpReLUTranscoder`` as a folder with
``cfg.json`` (``architecture: "jumprelu_transcoder"``, ``d_in``, ``d_sae``, ``d_out``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations`` and a
``metadata`` dict with ``model_name``, ``hook_name``, ``hook_name_out``, ``sae_lens_version``) and
``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``threshold [d_sae]``,
``W_dec [d_sae, d_out]``, ``b_dec [d_out]``). It computes ``pre = x @ W_enc + b_enc``,
``acts = relu(pre) * (pre > threshold)`` and ``out = acts @ W_dec + b_dec``; a transcoder never
subtracts ``b_dec`` from its input (``apply_b_dec_to_input`` must be false: ``b_dec`` lives in the
output space). A ``JumpReLUSkipTranscoder`` (``architecture: "jumprelu_skip_transcoder"``, the
same config fields) also has ``W_skip [d_out, d_in]`` and adds ``x @ W_skip.T``; a
``SkipTranscoder`` (``"skip_transcoder"``) is that with a plain ReLU.

Layer ``l`` of a per-layer [`CrossLayerTranscoder`][workbench.clt.transcoder.CrossLayerTranscoder]
is that map once its scalars are folded in: ``(x * in_scale) @ W_enc == x @ (in_scale * W_enc)``,
so ``W_enc' = in_scale[l] * W_enc[l]`` with ``b_enc`` and the threshold unchanged, and
``W_dec' = W_dec[l][0] / out_scale[l]``, ``b_dec' = b_dec[l] / out_scale[l]``; a skip transcoder's
skip (model units) is ``W_skip' = W_skip[l].T``, written as a ``jumprelu_skip_transcoder``. Our
threshold is positive, so SAELens's extra ReLU changes nothing. A cross-layer CLT has no such
export: its features write to several layers and SAELens's transcoder has one output.

Going back, [`load_saelens`][workbench.clt.formats.saelens.load_saelens] reads one folder per layer
with SAELens's own loader into a per-layer CLT with unit scales (a skip one where the folders have
``W_skip``). A SAELens threshold ``<= 0`` becomes threshold 0 (``log_threshold = -inf``), which is
exact since SAELens applies a ReLU before its threshold; a plain ReLU ``transcoder`` is the same
with threshold 0. Run-time input normalisation has no counterpart and is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float

from workbench.clt.formats._common import CheckpointError, add_skip, fold_norm, fold_skip, model_facts, to_cpu
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from sae_lens import Transcoder

    from workbench.models.model import Model

SAELENS_FORMAT_VERSION = "6.54.12"
"""The SAELens version whose folder format this writes (>= 6 matters)."""
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
EXACT_ARCHITECTURES = ("jumprelu_transcoder", "transcoder", "jumprelu_skip_transcoder", "skip_transcoder")


class SAELensError(WorkbenchError, ValueError):
    """A transcoder that cannot go to or come from SAELens's format as it is."""


def recognises(folder: Path) -> bool:
    """Whether ``folder`` holds a SAELens config and weights."""
    return (folder / CFG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def export_saelens(clt: CrossLayerTranscoder, layer: int, folder: Path | str, hook_model_name: str = "") -> Path:
    """Write layer ``layer`` of a per-layer CLT as a SAELens ``jumprelu_transcoder`` folder.

    A skip transcoder's layer is a ``jumprelu_skip_transcoder``. The folder works in model units:
    the scales are folded into the weights.

    Args:
        clt: A per-layer transcoder.
        layer: The layer to write (one with features).
        folder: Where to write (made if missing).
        hook_model_name: The model's name recorded in ``cfg.json`` (default: the transcoder's own).

    Returns:
        The folder.

    Raises:
        SAELensError: A cross-layer transcoder, or a layer out of range or without features.
    """
    from safetensors.torch import save_file

    config = clt.config
    if any(config.targets(source) > 1 for source in config.covered):
        raise SAELensError(
            "A cross-layer transcoder cannot be exported to SAELens: its features write to several layers "
            "and a SAELens transcoder has one output. Train a per-layer one (--per-layer, "
            "CLTConfig(per_layer=True)) to export."
        )
    if not 0 <= layer < config.n_layers:
        raise SAELensError(f"Layer {layer} is out of range; this transcoder has layers 0..{config.n_layers - 1}.")
    if not config.covers(layer):
        raise SAELensError(
            f"Layer {layer} has no features in this transcoder; it covers layers {', '.join(map(str, config.covered))}."
        )
    with torch.no_grad():
        weights = {
            "W_enc": clt.W_enc[layer] * clt.in_scale[layer],
            "b_enc": clt.b_enc[layer],
            "threshold": clt.threshold[layer],
            "W_dec": clt.W_dec[layer][0] / clt.out_scale[layer],
            "b_dec": clt.b_dec[layer] / clt.out_scale[layer],
        }
        if clt.W_skip is not None:
            weights["W_skip"] = clt.W_skip[layer].T  # SAELens adds x @ W_skip.T
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(to_cpu(weights), folder / WEIGHTS_FILE)
    cfg = _cfg(clt, layer, hook_model_name or config.model)
    (folder / CFG_FILE).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return folder


def _cfg(clt: CrossLayerTranscoder, layer: int, model_name: str) -> dict[str, object]:
    """SAELens's ``cfg.json`` for layer ``layer`` of ``clt``."""
    return {
        "architecture": "jumprelu_transcoder" if clt.W_skip is None else "jumprelu_skip_transcoder",
        "d_in": clt.config.d_model,
        "d_sae": clt.config.n_features,
        "d_out": clt.config.d_model,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            "model_name": model_name,
            "hook_name": mlp_in_hook(layer),
            "hook_name_out": mlp_out_hook(layer),
            "hook_head_index": None,
            "hook_head_index_out": None,
        },
    }


def save_saelens(clt: CrossLayerTranscoder, folder: Path | str, model_name: str = "") -> list[Path]:
    """Write every layer of a per-layer CLT with [`export_saelens`][workbench.clt.formats.saelens.export_saelens].

    Layer ``l`` goes to ``folder/layer_{l}``; every layer must have features.

    Returns:
        The folders, in layer order (what [`load_saelens`][workbench.clt.formats.saelens.load_saelens]
        reads back).
    """
    folder = Path(folder)
    return [export_saelens(clt, layer, folder / f"layer_{layer}", model_name) for layer in range(clt.config.n_layers)]


def load_saelens(
    sources: Sequence[Path | str | Transcoder],
    model_name: str = "",
    norm_weights: Sequence[Float[torch.Tensor, " d_model"]] | None = None,
) -> CrossLayerTranscoder:
    """A per-layer CLT whose activations and reconstructions equal SAELens's, with unit scales.

    Each source must read ``blocks.{l}.ln2.hook_normalized`` (the MLP input after normalisation,
    before the norm's weight) and write ``blocks.{l}.hook_mlp_out``. A transcoder that reads the
    norm's *output* instead (Gemma Scope 2's read ``pre_feedforward_layernorm.output``, which SAELens
    names ``blocks.{l}.hook_mlp_in``) is exact after folding that weight into its encoder.

    Args:
        sources: One SAELens transcoder per layer of the model, in layer order: a folder (read with
            SAELens's ``SAE.load_from_disk``) or an already loaded SAELens transcoder.
        model_name: Recorded as the transcoder's model (default: the first one's ``model_name``).
        norm_weights: ``[model.blocks[l].ln2.w for l in layers]``: every input hook is then taken as
            the norm's output, and the weight folded into the encoder.

    Raises:
        SAELensError: Sources that are not transcoders of the model's layers in order, of one
            width, or that a workbench transcoder cannot reproduce exactly.
    """
    if not sources:
        raise SAELensError("No SAELens transcoders given; pass one folder per layer, in layer order.")
    if norm_weights is not None and len(norm_weights) != len(sources):
        raise SAELensError(f"Got {len(norm_weights)} norm weights for {len(sources)} layers; pass one per layer.")
    transcoders = [_read(source, layer, norm_weights is not None) for layer, source in enumerate(sources)]
    widths = {t.cfg.d_sae for t in transcoders}
    if len(widths) > 1:
        raise SAELensError(
            f"The transcoders have different widths (d_sae {sorted(widths)}); a workbench transcoder needs "
            "the same number of features at every layer. Choose one width for all layers."
        )
    first = transcoders[0].cfg
    if any(t.cfg.d_in != first.d_in or t.cfg.d_out != first.d_in for t in transcoders):
        raise SAELensError("The transcoders' d_in and d_out differ; each must map the model's d_model to d_model.")
    name = model_name or first.metadata.model_name or ""
    skip = any(getattr(t, "W_skip", None) is not None for t in transcoders)  # a layer without one adds nothing
    config = CLTConfig(
        n_layers=len(transcoders), d_model=first.d_in, n_features=first.d_sae, per_layer=True, model=name, skip=skip
    )
    clt = CrossLayerTranscoder(config)
    with torch.no_grad():
        for layer, t in enumerate(transcoders):
            _set_layer(clt, layer, t, None if norm_weights is None else norm_weights[layer])
    return clt


def _set_layer(
    clt: CrossLayerTranscoder, layer: int, t: Transcoder, norm_weight: Float[torch.Tensor, " d_model"] | None
) -> None:
    """Layer ``layer`` of ``clt`` from SAELens's transcoder ``t`` (the norm weight folded into encoder and skip)."""
    W_enc = t.W_enc.float()
    if norm_weight is not None:
        W_enc, _ = fold_norm(W_enc, t.b_enc, norm_weight)
    threshold = getattr(t, "threshold", None)
    threshold = threshold.float() if threshold is not None else torch.zeros(clt.config.n_features)
    clt.W_enc[layer] = W_enc
    clt.b_enc[layer] = t.b_enc.float()
    clt.log_threshold[layer] = threshold.clamp_min(0).log()  # <= 0 is threshold 0: exact after the ReLU
    clt.W_dec[layer][0] = t.W_dec.float()
    clt.b_dec[layer] = t.b_dec.float()
    W_skip = getattr(t, "W_skip", None)
    if W_skip is not None:
        W_skip = W_skip.float().T  # SAELens adds x @ W_skip.T, ours x @ W_skip
        add_skip(clt, layer, fold_skip(W_skip, norm_weight)[0] if norm_weight is not None else W_skip)


def reads_norm_output(folder: Path | str) -> bool:
    """Whether a SAELens transcoder folder reads the MLP norm's output (``hook_mlp_in``).

    Gemma Scope 2's do: then [`load_saelens`][workbench.clt.formats.saelens.load_saelens] needs the
    norm weights to fold in.
    """
    cfg = Path(folder) / CFG_FILE
    if not cfg.is_file():
        return False
    return json.loads(cfg.read_text(encoding="utf-8")).get("metadata", {}).get("hook_name", "").endswith("hook_mlp_in")


def _read(source: Path | str | Transcoder, layer: int, reads_norm_output: bool) -> Transcoder:
    """Layer ``layer``'s SAELens transcoder, checked to map exactly onto ours at that layer.

    ``source``: a folder or a loaded transcoder.
    """
    from sae_lens import SAE, Transcoder

    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not recognises(folder):
            problem = "is not a SAELens folder" if folder.is_dir() else "does not exist"
            raise SAELensError(
                f"{folder} {problem} (one needs {CFG_FILE} and {WEIGHTS_FILE}). Give the folder "
                f"that SAELens's save_model wrote for layer {layer}."
            )
        sae = SAE.load_from_disk(folder, device="cpu", dtype="float32")
    else:
        folder, sae = source, source
    architecture = sae.cfg.architecture()
    if not isinstance(sae, Transcoder):
        raise SAELensError(f"{folder} is a SAELens {architecture} SAE, not a transcoder; give a transcoder per layer.")
    if architecture not in EXACT_ARCHITECTURES:
        raise SAELensError(
            f"{folder} is a SAELens {architecture}, which a workbench transcoder cannot reproduce exactly; "
            f"use a {', '.join(EXACT_ARCHITECTURES[:-1])} or {EXACT_ARCHITECTURES[-1]}."
        )
    _check_hooks(folder, sae, layer, reads_norm_output)
    return sae


def _check_hooks(folder: object, sae: Transcoder, layer: int, reads_norm_output: bool) -> None:
    """Refuse run-time normalisation and hooks other than layer ``layer``'s MLP input and output."""
    if (
        sae.cfg.normalize_activations in ("layer_norm", "constant_norm_rescale")
        or sae.cfg.reshape_activations != "none"
    ):
        raise SAELensError(
            f"{folder} normalises or reshapes its input at run time ({sae.cfg.normalize_activations}, "
            f"{sae.cfg.reshape_activations}); only transcoders that read the hook as it is can be loaded."
        )
    hook_in, hook_out = sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out
    if hook_out != mlp_out_hook(layer):
        raise SAELensError(
            f"{folder} writes {hook_out!r}, not {mlp_out_hook(layer)!r}; give the transcoders of every layer "
            "in layer order, each replacing that layer's MLP."
        )
    if not reads_norm_output and hook_in != mlp_in_hook(layer):
        raise SAELensError(
            f"{folder} reads {hook_in!r}, but a workbench transcoder reads {mlp_in_hook(layer)!r}. If it reads the "
            "norm's output (Gemma Scope 2's transcoders do), pass norm_weights=[model.blocks[l].ln2.w ...]."
        )
    if reads_norm_output and re.match(rf"blocks\.{layer}\.", hook_in or "") is None:
        raise SAELensError(f"{folder} reads {hook_in!r}, not layer {layer}; give the transcoders in layer order.")


def load_for_model(folders: list[Path], model_name: str, model: Model | None) -> CrossLayerTranscoder:
    """SAELens folders as [`load_saelens`][workbench.clt.formats.saelens.load_saelens] reads them for ``model``.

    The model's norm weights are folded in when the transcoders read the norm's output.

    Raises:
        CheckpointError: They do, and the model's norm weights are folded away (or no model is given).
    """
    weights = None
    if reads_norm_output(folders[0]):
        norms = model_facts(model)[0]
        if norms is None:
            raise CheckpointError(
                f"{folders[0]} reads the MLP norm's output, but this model's norm weights are "
                "folded into its weights (or no model was given); load the model without "
                "folding layer norms."
            )
        weights = [w for w, _ in norms]
    return load_saelens(folders, model_name=model_name, norm_weights=weights)


__all__ = [
    "CFG_FILE",
    "SAELensError",
    "WEIGHTS_FILE",
    "export_saelens",
    "load_for_model",
    "load_saelens",
    "reads_norm_output",
    "recognises",
    "save_saelens",
]
