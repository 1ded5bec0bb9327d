"""featflow's transcoder folder (the CLT paper's code), read into and written from ours.

Read from arXiv 2511.10840's code, ``abirharrasse/MultilingualCLTs`` at its only commit
``aca8cb0`` (``src/featflow/clt.py``, ``config/clt_config.py``, ``utils.py``,
``attribution/loading.py``). A folder holds:

* ``clt_cfg.json``: pydantic ``CLTConfig.to_dict``: ``model_name``, ``d_in``, ``d_latent``,
  ``n_layers``, ``cross_layer_decoders``, ``dtype``, ``jumprelu_init_threshold``,
  ``jumprelu_bandwidth`` and training settings;
* ``clt_weights.safetensors``: the module's state dict: ``W_enc [L, d, F]``, ``b_enc [L, F]``,
  ``log_threshold [L, F]``, ``estimated_norm_scaling_factor_in [L]`` and ``_out [L]``;
  ``feature_count [L, F]`` and, cross-layer, ``layer_mask [L, L(L+1)/2]`` (training only).
  Cross-layer: ``W_dec [L(L+1)/2, F, d]``, ``b_dec [L(L+1)/2, d]``, block ``i`` from source
  ``l_idx[i]`` to target ``k_idx[i]`` of ``torch.triu_indices(L, L)``; ``decode`` adds each
  block's bias to its target (``index_add``), so a target's bias is the sum of its blocks'.
  Per-layer: ``W_dec [L, F, d]``, ``b_dec [L, d]``.

Features are ``JumpReLU((x * scaling_in[l]) @ W_enc[l] + b_enc[l], exp(log_threshold))`` and the
reconstruction is ``decode(features) / scaling_out[target]``: our ``in_scale``/``out_scale``
exactly. Where ``x`` is read the code does not agree with itself (the training store reads
``hook_resid_mid``, the replacement model and the attribution loader ``ln2.hook_normalized``,
``replacement_forward`` the norm's output); we follow the setup notes and the attribution code:
``ln2.hook_normalized``, which is what our transcoder reads.

featflow's CLT has no skip connection: a skip transcoder of ours is not written in its layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workbench.clt.formats._common import CheckpointError, covered_only, decoder, to_cpu
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

CONFIG_FILE, WEIGHTS_FILE = "clt_cfg.json", "clt_weights.safetensors"
REQUIRED = (
    "W_enc",
    "b_enc",
    "log_threshold",
    "W_dec",
    "b_dec",
    "estimated_norm_scaling_factor_in",
    "estimated_norm_scaling_factor_out",
)
"""The tensors a featflow checkpoint must hold (the rest are for training)."""


def recognises(folder: Path) -> bool:
    """Whether ``folder`` holds featflow's config and weights."""
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def featflow_blocks(n_layers: int, cross: bool = True) -> list[tuple[int, int]]:
    """The decoder blocks of a featflow checkpoint as ``(source, target)`` layer pairs, in its order.

    Args:
        n_layers: The model's layers ``L``.
        cross: Cross-layer decoders (``torch.triu_indices(L, L)`` order), else one block per layer.
    """
    if not cross:
        return [(layer, layer) for layer in range(n_layers)]
    rows, cols = torch.triu_indices(n_layers, n_layers)
    return list(zip(rows.tolist(), cols.tolist()))


def load_featflow(folder: Path | str, model_name: str = "") -> CrossLayerTranscoder:
    """A featflow checkpoint (cross-layer or per-layer) as our transcoder, scales and all.

    Args:
        folder: The folder with ``clt_cfg.json`` and ``clt_weights.safetensors``.
        model_name: Recorded as the transcoder's model where the config names none.

    Raises:
        CheckpointError: A tensor is missing, or the shapes disagree with each other or the config.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    tensors = {k: v.float() for k, v in load_file(folder / WEIGHTS_FILE).items()}
    absent = [k for k in REQUIRED if k not in tensors]
    if absent:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} lacks {', '.join(absent)}; it is not a featflow CLT.")
    L, d, F = tensors["W_enc"].shape
    cross = bool(cfg.get("cross_layer_decoders", tensors["W_dec"].shape[0] != L))
    _check_shapes(folder, cfg, tensors, cross)
    config = CLTConfig(
        L,
        d,
        F,
        per_layer=not cross,
        threshold_init=float(cfg.get("jumprelu_init_threshold", 0.03)),
        bandwidth=float(cfg.get("jumprelu_bandwidth", 1.0)),
        model=cfg.get("model_name") or model_name,
    )
    clt = CrossLayerTranscoder(config)
    with torch.no_grad():
        clt.W_enc.copy_(tensors["W_enc"])
        clt.b_enc.copy_(tensors["b_enc"])
        clt.log_threshold.copy_(tensors["log_threshold"])
        clt.in_scale.copy_(tensors["estimated_norm_scaling_factor_in"])
        clt.out_scale.copy_(tensors["estimated_norm_scaling_factor_out"])
        clt.b_dec.zero_()
        for i, (source, target) in enumerate(featflow_blocks(L, cross)):
            clt.W_dec[source][target - source].copy_(tensors["W_dec"][i])
            clt.b_dec[target] += tensors["b_dec"][i]  # a target's bias is the sum of its blocks'
    return clt.eval()


def _check_shapes(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor], cross: bool) -> None:
    """Refuse a featflow checkpoint whose tensors disagree with each other or with its config."""
    L, d, F = tensors["W_enc"].shape
    blocks = L * (L + 1) // 2 if cross else L
    expected = {
        "b_enc": (L, F),
        "log_threshold": (L, F),
        "W_dec": (blocks, F, d),
        "b_dec": (blocks, d),
        "estimated_norm_scaling_factor_in": (L,),
        "estimated_norm_scaling_factor_out": (L,),
    }
    wrong = [
        f"{k} {tuple(tensors[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if tuple(tensors[k].shape) != shape
    ]
    stated = {"d_in": d, "d_latent": F, "n_layers": L}
    wrong += [f"config {k} {cfg[k]} (tensors: {v})" for k, v in stated.items() if k in cfg and cfg[k] != v]
    if wrong:
        kind = "cross-layer" if cross else "per-layer"
        raise CheckpointError(
            f"{folder} is not a consistent featflow {kind} CLT with W_enc {tuple(tensors['W_enc'].shape)}: "
            f"{'; '.join(wrong)}."
        )


def save_featflow(clt: CrossLayerTranscoder, folder: Path | str, model_name: str = "") -> Path:
    """Write ``clt`` as a folder that featflow's ``CLT.load_from_pretrained`` accepts.

    With ``feature_count`` and ``layer_mask``, which its strict loading asks for. A per-layer
    transcoder stays per-layer; any other is written cross-layer, with zero blocks where ours has
    no decoder (a window, layers without features): the same function.

    Args:
        clt: The transcoder.
        folder: Where to write (made if missing).
        model_name: The model recorded in the config (default: the transcoder's own).

    Returns:
        The folder.

    Raises:
        CheckpointError: A skip transcoder (featflow's CLT has no skip).
    """
    from safetensors.torch import save_file

    c, L = clt.config, clt.config.n_layers
    if clt.W_skip is not None:
        raise CheckpointError(
            f"This is {c.kind}; featflow's CLT (the CLT paper's code) has no skip connection, so its files "
            "cannot hold this one's. Save it as ours, circuit-tracer's or SAELens's (per-layer) or Gemma Scope 2's."
        )
    cross = any(c.targets(layer) > 1 for layer in range(L))
    blocks = featflow_blocks(L, cross)
    with torch.no_grad():
        W_dec = torch.stack([decoder(clt, s, t) for s, t in blocks])
        b_dec = torch.stack([clt.b_dec[t] if s == t else torch.zeros_like(clt.b_dec[t]) for s, t in blocks])
        tensors = {
            "W_enc": clt.W_enc,
            "b_enc": covered_only(clt, clt.b_enc),
            "log_threshold": clt.log_threshold,
            "W_dec": W_dec,
            "b_dec": b_dec,
            "estimated_norm_scaling_factor_in": clt.in_scale,
            "estimated_norm_scaling_factor_out": clt.out_scale,
        }
        tensors = to_cpu(tensors)
    tensors["feature_count"] = torch.zeros(L, c.n_features, dtype=torch.long)
    if cross:
        rows = torch.tensor([s for s, _ in blocks])
        tensors["layer_mask"] = (torch.arange(L)[:, None] == rows[None, :]).float()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(_config(clt, model_name, cross), indent=1), encoding="utf-8")
    return folder


def _config(clt: CrossLayerTranscoder, model_name: str, cross: bool) -> dict[str, object]:
    """The ``clt_cfg.json`` of ``clt`` (the training settings featflow requires, as zeros)."""
    c = clt.config
    return {
        "device": "cpu",
        "dtype": "float32",
        "seed": 0,
        "model_name": model_name or c.model,
        "d_in": c.d_model,
        "d_latent": c.n_features,
        "n_layers": c.n_layers,
        "jumprelu_bandwidth": c.bandwidth,
        "jumprelu_init_threshold": c.threshold_init,
        "normalize_decoder": False,
        "dead_feature_window": 0,
        "cross_layer_decoders": cross,
        "context_size": 0,
        "l0_coefficient": 0.0,
    }


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "featflow_blocks", "load_featflow", "recognises", "save_featflow"]
