"""Per-layer transcoders to and from SAELens's transcoder folders.

SAELens (6.x, ``sae_lens/saes/transcoder.py``) saves a ``JumpReLUTranscoder`` as a folder with
``cfg.json`` (``architecture: "jumprelu_transcoder"``, ``d_in``, ``d_sae``, ``d_out``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations`` and a
``metadata`` dict with ``model_name``, ``hook_name``, ``hook_name_out``, ``sae_lens_version``) and
``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``threshold [d_sae]``,
``W_dec [d_sae, d_out]``, ``b_dec [d_out]``). It computes ``pre = x @ W_enc + b_enc``,
``acts = relu(pre) * (pre > threshold)`` and ``out = acts @ W_dec + b_dec``; a transcoder never
subtracts ``b_dec`` from its input (``apply_b_dec_to_input`` must be false: ``b_dec`` lives in the
output space).

Layer ``l`` of a per-layer [`CrossLayerTranscoder`][workbench.clt.transcoder.CrossLayerTranscoder] is that map
once its scalars are folded in: ``(x * in_scale) @ W_enc == x @ (in_scale * W_enc)``, so
``W_enc' = in_scale[l] * W_enc[l]`` with ``b_enc`` and the threshold unchanged, and
``W_dec' = W_dec[l][0] / out_scale[l]``, ``b_dec' = b_dec[l] / out_scale[l]``. Our threshold is
positive, so SAELens's extra ReLU changes nothing. A cross-layer CLT has no such export: its
features write to several layers and SAELens's transcoder has one output.

Going back, [`load_saelens`][workbench.clt.saelens.load_saelens] reads one folder per layer with SAELens's own loader into a
per-layer CLT with unit scales. A SAELens threshold ``<= 0`` becomes threshold 0
(``log_threshold = -inf``), which is exact since SAELens applies a ReLU before its threshold; a
plain ReLU ``transcoder`` is the same with threshold 0. Skip transcoders (an extra ``x @ W_skip``)
and run-time input normalisation have no counterpart and are refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from workbench.clt.transcoder import (
    CLTConfig,
    CrossLayerTranscoder,
    mlp_in_hook,
    mlp_out_hook,
)
from workbench.errors import WorkbenchError

SAELENS_FORMAT_VERSION = "6.54.12"  # the SAELens version whose folder format this writes (>= 6 matters)
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
EXACT_ARCHITECTURES = ("jumprelu_transcoder", "transcoder")


class SAELensError(WorkbenchError, ValueError):
    """A transcoder that cannot go to or come from SAELens's format as it is."""


def export_saelens(clt: CrossLayerTranscoder, layer: int, folder: Path | str, hook_model_name: str = "") -> Path:
    """Write layer ``layer`` of a per-layer CLT as a SAELens ``jumprelu_transcoder`` folder that
    works in model units (scales folded into the weights); returns the folder. ``hook_model_name``
    is recorded as the model's name (default: the CLT's own ``config.model``).
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
    cfg = {
        "architecture": "jumprelu_transcoder",
        "d_in": config.d_model,
        "d_sae": config.n_features,
        "d_out": config.d_model,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            "model_name": hook_model_name or config.model,
            "hook_name": mlp_in_hook(layer),
            "hook_name_out": mlp_out_hook(layer),
            "hook_head_index": None,
            "hook_head_index_out": None,
        },
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in weights.items()}, folder / WEIGHTS_FILE)
    (folder / CFG_FILE).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return folder


def load_saelens(
    sources: list[Any],
    model_name: str = "",
    norm_weights: list[torch.Tensor] | None = None,
) -> CrossLayerTranscoder:
    """A per-layer CLT (``in_scale = out_scale = 1``) whose activations and reconstructions equal
    SAELens's, from one SAELens transcoder per layer of the model, in layer order: a folder
    (read with SAELens's ``SAE.load_from_disk``) or an already loaded SAELens transcoder.

    Each must read ``blocks.{l}.ln2.hook_normalized`` (the MLP input after normalisation, before
    the norm's weight) and write ``blocks.{l}.hook_mlp_out``. A transcoder that reads the norm's
    *output* instead (Gemma Scope 2's read ``pre_feedforward_layernorm.output``, which SAELens names
    ``blocks.{l}.hook_mlp_in``) is exact after folding that weight into its encoder: pass
    ``norm_weights=[model.blocks[l].ln2.w for l in layers]`` and every input hook is taken as that.
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
    config = CLTConfig(
        n_layers=len(transcoders), d_model=first.d_in, n_features=first.d_sae, per_layer=True, model=name
    )
    clt = CrossLayerTranscoder(config)
    with torch.no_grad():
        for layer, t in enumerate(transcoders):
            W_enc = t.W_enc.float()
            if norm_weights is not None:
                W_enc = norm_weights[layer].float().to(W_enc.device)[:, None] * W_enc
            threshold = t.threshold.float() if hasattr(t, "threshold") else torch.zeros(first.d_sae)
            clt.W_enc[layer] = W_enc
            clt.b_enc[layer] = t.b_enc.float()
            clt.log_threshold[layer] = threshold.clamp_min(0).log()  # <= 0 is threshold 0: exact after the ReLU
            clt.W_dec[layer][0] = t.W_dec.float()
            clt.b_dec[layer] = t.b_dec.float()
    return clt


def reads_norm_output(folder: Path | str) -> bool:
    """Whether a SAELens transcoder folder reads the MLP norm's output (``hook_mlp_in``, as Gemma
    Scope 2's do): then [`load_saelens`][workbench.clt.saelens.load_saelens] needs the norm weights to fold in.
    """
    cfg = Path(folder) / CFG_FILE
    if not cfg.is_file():
        return False
    return json.loads(cfg.read_text(encoding="utf-8")).get("metadata", {}).get("hook_name", "").endswith("hook_mlp_in")


def _read(source: Any, layer: int, reads_norm_output: bool) -> Any:
    """Layer ``layer``'s SAELens transcoder from ``source`` (a folder or a loaded one), checked to
    map exactly onto a workbench per-layer transcoder at that layer.
    """
    from sae_lens import SAE, Transcoder

    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not (folder / CFG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
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
            f"{folder} is a SAELens {architecture}, which a workbench transcoder cannot reproduce exactly "
            f"(a skip transcoder adds x @ W_skip); use a {' or '.join(EXACT_ARCHITECTURES)}."
        )
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
    return sae


__all__ = ["SAELensError", "export_saelens", "load_saelens", "reads_norm_output"]
