"""circuit-tracer's transcoder folders, read into and written from ours.

Read from circuit-tracer 0.5.0 (``decoderesearch/circuit-tracer`` tag ``v0.5.0``: ``transcoder/``,
``utils/hf_utils.py``, ``utils/caching.py``). A folder holds ``config.yaml``: ``model_kind``
(``transcoder_set`` or ``cross_layer_transcoder``), ``feature_input_hook`` and
``feature_output_hook`` (under ``blocks.{l}``), optionally ``model_name``, ``transcoders`` (a list
of per-layer files, else ``layer_{i}.safetensors``), ``activation: relu|topk`` and ``k``. Then:

* **per-layer** (``load_transcoder``): ``layer_{i}.safetensors`` with ``W_enc [F, d]``
  (``F.linear``: ``x @ W_enc.T``), ``W_dec [F, d]``, ``b_enc [F]``, ``b_dec [d]``, optionally
  ``activation_function.threshold [F]`` (JumpReLU, else ReLU), ``W_skip [d, d]`` (a skip
  transcoder: ``compute_skip`` adds ``x @ W_skip.T``, ``x`` the input hook's value) and ``k`` (TopK);
* **cross-layer** (``load_clt``; layers = the number of ``W_enc_*.safetensors``):
  ``W_enc_{i}.safetensors`` with ``W_enc_{i} [F, d]``, ``b_enc_{i} [F]``, ``b_dec_{i} [d]``
  (target ``i``'s bias) and optionally ``threshold_{i} [F]`` (JumpReLU when layer 0 has one, else
  ReLU); ``W_dec_{i}.safetensors`` with ``W_dec_{i} [F, L - i, d]`` (to targets ``i..L-1``). Its
  ``CrossLayerTranscoder`` has a ``W_skip [L, d, d]``, but these files carry none (``to_safetensors``
  writes none, ``load_clt`` reads none; ``load_gemma_scope_2_clt`` fills it from Gemma Scope 2's).

Its JumpReLU is ``x * (x > threshold)`` with no ReLU before it, and nothing is scaled.

**What maps exactly.** Inputs: ``ln2.hook_normalized`` as it is; ``mlp.hook_in`` (the norm's
output ``n * w + b``) with the norm folded into the encoder and the skip
(``skip(n * w + b) = n @ (w[:, None] * W) + b @ W``, the constant joining the decoder bias). A
per-layer ``W_skip`` becomes our ``W_skip[l] = W_skip.T`` (ours adds ``x @ W_skip[l]``). Outputs:
``hook_mlp_out``, and ``mlp.hook_out`` on a model without a post-MLP norm. A threshold of 0 (and a
plain ReLU) is a JumpReLU with threshold ``exp(RELU_LOG_THRESHOLD)``. Everything else is refused
with the reason: other hooks (``hook_resid_mid`` above all), negative thresholds (they pass
negative values) and TopK; and writing a cross-layer skip transcoder (the CLT files hold no skip).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch

from workbench.clt.formats._common import (
    RELU_LOG_THRESHOLD,
    CheckpointError,
    Norms,
    add_skip,
    covered_only,
    decoder,
    fold_norm,
    fold_skip,
    to_cpu,
)
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

CONFIG_FILE = "config.yaml"
NORM_INPUT, NORM_OUTPUT = "ln2.hook_normalized", "mlp.hook_in"  # circuit-tracer's names, under blocks.{l}
MLP_OUTPUTS = ("hook_mlp_out", "mlp.hook_out")

Layer = dict[str, torch.Tensor | None]
"""One source layer's tensors, ours by name: ``W_enc [F, d]``, ``b_enc``, ``threshold`` (or None),
``W_dec [F, targets, d]``, ``b_dec``, ``W_skip [d, d]`` (circuit-tracer's, or None)."""


def recognises(folder: Path) -> bool:
    """Whether ``folder`` holds circuit-tracer's config or the first layer's weights."""
    return any((folder / name).is_file() for name in (CONFIG_FILE, "W_enc_0.safetensors", "layer_0.safetensors"))


def load_circuit_tracer(
    folder: Path | str, model_name: str = "", norms: Norms | None = None, post_mlp_norm: bool | None = None
) -> CrossLayerTranscoder:
    """circuit-tracer's per-layer transcoders or CLT as our transcoder, with unit scales.

    Args:
        folder: The folder with ``config.yaml`` and the weights.
        model_name: Recorded as the transcoder's model where the config names none.
        norms: The model's MLP input norms (weight, bias) per layer, folded into the encoders of a
            transcoder that reads ``mlp.hook_in``.
        post_mlp_norm: Whether the model's MLPs have a norm after them (``mlp.hook_out`` is then
            not ``hook_mlp_out``); None: unknown.

    Raises:
        CheckpointError: What a workbench transcoder cannot reproduce (module docstring), or
            missing and inconsistent files.
    """
    folder = Path(folder)
    config = _config(folder)
    fold = _input_norms(folder, config, norms)
    _check_output(folder, config, post_mlp_norm)
    if config.get("activation") == "topk" or "k" in config:
        raise CheckpointError(
            f"{folder} holds TopK transcoders; a workbench transcoder's JumpReLU cannot keep "
            "the k largest features. Use JumpReLU or ReLU transcoders."
        )
    kind = config.get("model_kind")
    if kind == "transcoder_set":
        layers = [_set_layer(path) for path in _layer_files(folder, config)]
    elif kind == "cross_layer_transcoder":
        layers = _clt_layers(folder)
    else:
        raise CheckpointError(
            f"{folder / CONFIG_FILE} has model_kind {kind!r}; circuit-tracer's are "
            "'transcoder_set' and 'cross_layer_transcoder'."
        )
    if config.get("activation") == "relu":  # circuit-tracer then ignores any threshold in the files
        layers = [{**layer, "threshold": None} for layer in layers]
    return _build(folder, layers, kind == "transcoder_set", config.get("model_name") or model_name, fold)


def _config(folder: Path) -> dict[str, Any]:
    """``config.yaml``: required, since without it the hooks the features read are unknown."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder} has circuit-tracer transcoder files but no {CONFIG_FILE}, so which point they read is "
            "unknown (circuit-tracer's default is hook_resid_mid, which a workbench transcoder cannot read). "
            f"Add a {CONFIG_FILE} with model_kind, feature_input_hook (ln2.hook_normalized or mlp.hook_in) and "
            "feature_output_hook (hook_mlp_out)."
        )
    import yaml  # PyYAML: a dependency of transformers

    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a mapping of settings; it is not a circuit-tracer config.")
    return config


def _input_norms(folder: Path, config: dict[str, Any], norms: Norms | None) -> Norms | None:
    """The norms to fold into the encoders (None: the input is ``ln2.hook_normalized`` as it is)."""
    hook = config.get("feature_input_hook")
    if hook == NORM_INPUT:
        return None
    if hook == NORM_OUTPUT:
        if norms is None:
            raise CheckpointError(
                f"{folder} reads {hook} (the MLP norm's output, after its weight and bias); it maps onto a workbench "
                "transcoder only with that norm folded in. Load it with the model (load_transcoder(..., "
                "model=model)), and that model without folding layer norms."
            )
        return norms
    raise CheckpointError(
        f"{folder} reads blocks.{{l}}.{hook}, but a workbench transcoder reads blocks.{{l}}.{NORM_INPUT} "
        f"(or, with the norm folded in, {NORM_OUTPUT}). "
        + (
            "hook_resid_mid is the residual before the MLP's norm, which a linear encoder of the normalised "
            "input cannot reproduce; "
            if hook == "hook_resid_mid"
            else ""
        )
        + "Use transcoders trained on the MLP's (normalised) input."
    )


def _check_output(folder: Path, config: dict[str, Any], post_mlp_norm: bool | None) -> None:
    """Refuse an output our transcoder does not reconstruct (``hook_mlp_out``)."""
    hook = config.get("feature_output_hook")
    if hook == "hook_mlp_out" or (hook == "mlp.hook_out" and post_mlp_norm is False):
        return
    if hook == "mlp.hook_out":
        raise CheckpointError(
            f"{folder} writes mlp.hook_out, the MLP's output before any norm after it; that is "
            "blocks.{l}.hook_mlp_out only on a model without a post-MLP norm. "
            + ("This model has one; " if post_mlp_norm else "Load it with the model to check; ")
            + "transcoders for it must write hook_mlp_out."
        )
    raise CheckpointError(
        f"{folder} writes blocks.{{l}}.{hook}; ours reconstructs the MLP output ({', '.join(MLP_OUTPUTS)})."
    )


def _layer_files(folder: Path, config: dict[str, Any]) -> list[Path]:
    """The per-layer files, in layer order: ``transcoders`` in the config, else ``layer_{i}.safetensors``."""
    if "transcoders" in config:
        paths = [str(p) for p in config["transcoders"]]
        remote = [p for p in paths if p.startswith("hf://")]
        if remote:
            raise CheckpointError(
                f"{folder / CONFIG_FILE} names files on the hub ({remote[0]}, ...); download them "
                "first (circuit-tracer's save_transcoders_to_cache writes a local folder)."
            )
        files = [Path(p) if Path(p).is_absolute() or Path(p).is_file() else folder / p for p in paths]
    else:
        count = len(list(folder.glob("layer_*.safetensors")))
        files = [folder / f"layer_{i}.safetensors" for i in range(count)]
    absent = [str(f) for f in files if not f.is_file() or f.suffix != ".safetensors"]
    if not files or absent:
        raise CheckpointError(
            f"{folder}: per-layer transcoder files missing or not safetensors "
            f"({', '.join(absent) or 'no layer_0.safetensors'}); Gemma Scope's .npz files "
            "need circuit-tracer's save_transcoders_to_cache first."
        )
    return files


def _set_layer(path: Path) -> Layer:
    """One per-layer transcoder file as a [`Layer`][workbench.clt.formats.circuit_tracer.Layer] (one target)."""
    from safetensors.torch import load_file

    t = load_file(path)
    if "k" in t or "log_thresholds" in t:
        raise CheckpointError(
            f"{path} holds {'k (a TopK transcoder)' if 'k' in t else 'log_thresholds'}, which "
            "circuit-tracer's JumpReLU/ReLU loader does not read either; it cannot be loaded."
        )
    _require(path, t, ["W_enc", "W_dec", "b_enc", "b_dec"])
    return {
        "W_enc": t["W_enc"],
        "b_enc": t["b_enc"],
        "threshold": t.get("activation_function.threshold"),
        "W_dec": t["W_dec"][:, None],
        "b_dec": t["b_dec"],
        "W_skip": t.get("W_skip"),
    }


def _clt_layers(folder: Path) -> list[Layer]:
    """A circuit-tracer CLT's per-source-layer tensors (decoders ``[F, L - i, d]``)."""
    from safetensors.torch import load_file

    L = len(list(folder.glob("W_enc_*.safetensors")))
    absent = [
        name
        for i in range(L)
        for name in (f"W_enc_{i}.safetensors", f"W_dec_{i}.safetensors")
        if not (folder / name).is_file()
    ]
    if L == 0 or absent:
        raise CheckpointError(
            f"{folder}: a circuit-tracer CLT needs W_enc_i and W_dec_i.safetensors for every "
            f"layer i; missing {', '.join(absent) or 'W_enc_0.safetensors'}."
        )
    layers: list[Layer] = []
    has_threshold = None
    for i in range(L):
        enc, dec = load_file(folder / f"W_enc_{i}.safetensors"), load_file(folder / f"W_dec_{i}.safetensors")
        _require(folder / f"W_enc_{i}.safetensors", enc, [f"W_enc_{i}", f"b_enc_{i}", f"b_dec_{i}"])
        _require(folder / f"W_dec_{i}.safetensors", dec, [f"W_dec_{i}"])
        has_threshold = f"threshold_{i}" in enc if has_threshold is None else has_threshold  # layer 0 decides
        layers.append(
            {
                "W_enc": enc[f"W_enc_{i}"],
                "b_enc": enc[f"b_enc_{i}"],
                "b_dec": enc[f"b_dec_{i}"],
                "threshold": enc[f"threshold_{i}"].reshape(-1) if has_threshold else None,
                "W_dec": dec[f"W_dec_{i}"],
                "W_skip": None,
            }
        )
    return layers


def _require(path: Path, tensors: dict[str, torch.Tensor], keys: list[str]) -> None:
    """Refuse a file that lacks one of ``keys``."""
    absent = [k for k in keys if k not in tensors]
    if absent:
        raise CheckpointError(
            f"{path} lacks {', '.join(absent)} (it holds {', '.join(sorted(tensors))}); it is not a circuit-tracer "
            "transcoder file"
            + ("; it is Gemma Scope 2's: give its transcoder_all or clt folder." if "w_enc" in tensors else ".")
        )


def _build(folder: Path, layers: list[Layer], per_layer: bool, model: str, fold: Norms | None) -> CrossLayerTranscoder:
    """Our transcoder from circuit-tracer's per-layer tensors (no scales: they are 1)."""
    L = len(layers)
    F, d = _tensor(layers[0], "W_enc").shape
    if fold is not None and len(fold) != L:
        raise CheckpointError(
            f"The transcoder has {L} layers; the model has {len(fold)}. Use a transcoder made for "
            "this model (or --model the one it was made for)."
        )
    skip = any(t["W_skip"] is not None for t in layers)  # a layer without one adds nothing
    config = CLTConfig(L, d, F, per_layer=per_layer, model=model, skip=skip)
    clt = CrossLayerTranscoder(config)
    with torch.no_grad():
        for i, t in enumerate(layers):
            _check_layer(folder, i, t, config)
            W_enc = _tensor(t, "W_enc").float().T  # [d, F]
            b_enc = _tensor(t, "b_enc").float()
            if fold is not None:
                W_enc, b_enc = fold_norm(W_enc, b_enc, *fold[i])
            clt.W_enc[i], clt.b_enc[i] = W_enc, b_enc
            clt.log_threshold[i] = _log_threshold(folder, i, t["threshold"], F)
            clt.W_dec[i].copy_(_tensor(t, "W_dec").float().transpose(0, 1))  # [F, T, d] -> [T, F, d]
            clt.b_dec[i] = _tensor(t, "b_dec").float()
            if t["W_skip"] is not None:
                W_skip = _tensor(t, "W_skip").float().T  # theirs adds x @ W_skip.T, ours x @ W_skip
                add_skip(clt, i, *(fold_skip(W_skip, *fold[i]) if fold is not None else (W_skip, None)))
    return clt.eval()


def _tensor(layer: Layer, name: str) -> torch.Tensor:
    """A tensor the layer always has (only the threshold and the skip may be None)."""
    return cast(torch.Tensor, layer[name])


def _check_layer(folder: Path, layer: int, t: Layer, config: CLTConfig) -> None:
    """Refuse a layer whose shapes are not those of the first (a workbench transcoder has one width)."""
    F, d, T = config.n_features, config.d_model, config.targets(layer)
    expected = {"W_enc": (F, d), "b_enc": (F,), "b_dec": (d,), "W_dec": (F, T, d), "threshold": (F,), "W_skip": (d, d)}
    shapes = {k: tuple(v.shape) for k, v in t.items() if v is not None}  # the threshold and skip may be absent
    wrong = [f"{k} {shapes[k]} (expected {expected[k]})" for k in shapes if shapes[k] != expected[k]]
    if wrong:
        raise CheckpointError(
            f"{folder}, layer {layer}: {'; '.join(wrong)}. A workbench transcoder needs the same "
            "width at every layer and decoders to every later layer (cross-layer) or its own."
        )


def _log_threshold(folder: Path, layer: int, threshold: torch.Tensor | None, F: int) -> torch.Tensor:
    """Our log-threshold for circuit-tracer's ``x * (x > threshold)`` (or ReLU when None)."""
    if threshold is None:
        return torch.full((F,), RELU_LOG_THRESHOLD)
    threshold = threshold.float().reshape(-1)
    if (threshold < 0).any():
        raise CheckpointError(
            f"{folder}, layer {layer}: {int((threshold < 0).sum())} negative JumpReLU thresholds. circuit-tracer "
            "applies no ReLU first, so those features pass negative values, which a workbench JumpReLU (threshold "
            "> 0) cannot; clamp the thresholds at 0 (making them ReLUs) if that is what you mean."
        )
    return threshold.log().clamp_min(RELU_LOG_THRESHOLD)


def save_circuit_tracer(clt: CrossLayerTranscoder, folder: Path | str, model_name: str = "") -> Path:
    """Write ``clt`` in circuit-tracer's layout, scales folded in.

    It reads ``ln2.hook_normalized`` and writes ``hook_mlp_out``. Per-layer transcoders are written
    as ``layer_{i}.safetensors`` (a skip as ``W_skip``), any other as a CLT
    (``W_enc_{i}``/``W_dec_{i}.safetensors``, zero decoders where ours has none).

    Args:
        clt: The transcoder.
        folder: Where to write (made if missing).
        model_name: The model recorded in ``config.yaml`` (default: the transcoder's own).

    Returns:
        The folder.

    Raises:
        CheckpointError: A cross-layer skip transcoder (circuit-tracer's CLT files hold no skip).
    """
    from safetensors.torch import save_file

    c, L = clt.config, clt.config.n_layers
    per_layer = all(c.targets(layer) == 1 for layer in range(L))
    if clt.W_skip is not None and not per_layer:
        raise CheckpointError(
            f"This is {c.kind}; circuit-tracer 0.5's CLT files (W_enc_i/W_dec_i.safetensors, what its "
            "to_safetensors writes and load_clt reads) hold no skip, so circuit-tracer would run it without one. "
            "Save it as ours or in Gemma Scope 2's clt layout (save_transcoder(..., 'gemma-scope-2', model=...)), "
            "or write a per-layer skip transcoder, whose layer_{i}.safetensors carry W_skip."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        b_enc = covered_only(clt, clt.b_enc)
        for i in range(L):
            if per_layer:
                save_file(to_cpu(_per_layer_tensors(clt, i, b_enc[i])), folder / f"layer_{i}.safetensors")
            else:
                enc = {
                    f"W_enc_{i}": (clt.W_enc[i] * clt.in_scale[i]).T,
                    f"b_enc_{i}": b_enc[i],
                    f"b_dec_{i}": clt.b_dec[i] / clt.out_scale[i],
                    f"threshold_{i}": clt.threshold[i],
                }
                W_dec = torch.stack([decoder(clt, i, k) / clt.out_scale[k] for k in range(i, L)], dim=1)
                save_file(to_cpu(enc), folder / f"W_enc_{i}.safetensors")
                save_file(to_cpu({f"W_dec_{i}": W_dec}), folder / f"W_dec_{i}.safetensors")  # [F, L - i, d]
    config = {
        "model_name": model_name or c.model,
        "model_kind": "transcoder_set" if per_layer else "cross_layer_transcoder",
        "feature_input_hook": NORM_INPUT,
        "feature_output_hook": "hook_mlp_out",
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")  # JSON is YAML
    return folder


def _per_layer_tensors(clt: CrossLayerTranscoder, layer: int, b_enc: torch.Tensor) -> dict[str, torch.Tensor]:
    """Layer ``layer`` of a per-layer ``clt`` as circuit-tracer's ``layer_{i}.safetensors`` (scales folded in)."""
    tensors = {
        "W_enc": (clt.W_enc[layer] * clt.in_scale[layer]).T,
        "W_dec": decoder(clt, layer, layer) / clt.out_scale[layer],
        "b_enc": b_enc,
        "b_dec": clt.b_dec[layer] / clt.out_scale[layer],
        "activation_function.threshold": clt.threshold[layer],
    }
    if clt.W_skip is not None:
        tensors["W_skip"] = clt.W_skip[layer].T  # circuit-tracer adds x @ W_skip.T
    return tensors


__all__ = [
    "CONFIG_FILE",
    "RELU_LOG_THRESHOLD",
    "Layer",
    "load_circuit_tracer",
    "recognises",
    "save_circuit_tracer",
]
