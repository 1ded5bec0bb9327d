"""Gemma Scope 2's transcoders for Gemma 3, read from the folders a user downloads, and written.

Read from SAELens 6.54 (``loading/pretrained_sae_loaders.py``: ``get_gemma_3_config_from_hf``,
``gemma_3_sae_huggingface_loader``; ``pretrained_saes.yaml``: ``gemma-scope-2-270m-pt-transcoders-all``)
and circuit-tracer 0.5 (``load_gemma_scope_2_transcoder``, ``load_gemma_scope_2_clt``). A release
``google/gemma-scope-2-{size}-{pt,it}`` holds:

* ``transcoder_all/layer_{i}_width_{w}_l0_{size}[_affine]/params.safetensors``: per-layer
  transcoders, one folder per layer and variant: ``w_enc [d, F]``, ``b_enc [F]``,
  ``threshold [F]``, ``w_dec [F, d]``, ``b_dec [d]`` and, ``_affine``, ``affine_skip_connection
  [d, d]`` (adds ``x @ affine_skip_connection``); maybe a ``config.json`` beside
  (``architecture: jump_relu``, ``hf_hook_point_in``, ``hf_hook_point_out``, ``affine_connection``);
* ``clt/width_{w}_l0_{size}[_affine]/params_layer_{i}.safetensors``: a cross-layer transcoder,
  source layer ``i``'s file with the same names, ``b_dec`` target ``i``'s bias and
  ``w_dec [F, L, d]`` to every layer, of which circuit-tracer keeps ``w_dec[:, i:]`` (targets
  ``i..L-1``; ``[F, L - i, d]`` is read too). SAELens sums ``w_dec`` over the targets, making
  per-layer transcoders; it is kept cross-layer here.

Features are ``relu(pre) * (pre > threshold)``, ``pre = x @ w_enc + b_enc`` (SAELens's and
circuit-tracer's JumpReLU: a strict ``>``); the output is ``acts @ w_dec + b_dec`` plus the skip.
``x`` is ``pre_feedforward_layernorm``'s output, the norm's weight applied (TransformerLens:
``ln2.hook_normalized * ln2.w``); the output is ``post_feedforward_layernorm``'s (``hook_mlp_out``).

**What maps exactly.** Ours reads ``ln2.hook_normalized``, so the model's ``ln2.w`` is folded into
the encoder and the skip (``w[:, None] * w_enc``); thresholds ``<= 0`` gate as 0 after the ReLU and
become ``exp(RELU_LOG_THRESHOLD)``; scales are 1. Folders holding only some layers of a per-layer
variant give a transcoder on those layers. Refused: no model, or one whose norm weights are folded
away; another model's transcoders (layers or width); a folder of several variants with none chosen;
the SAE folders (``resid_post_all``, ``mlp_out_all``, ``attn_out_all``: the same layout and names).
Writing divides by ``ln2.w`` (refused where it is 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from workbench.clt.formats._common import (
    CheckpointError,
    Norms,
    add_skip,
    covered_only,
    decoder,
    fold_norm,
    fold_skip,
    log_threshold_after_relu,
    to_cpu,
)
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder

PARAMS_FILE, CONFIG_FILE = "params.safetensors", "config.json"
LAYER_FOLDER = re.compile(r"layer_(\d+)_(\w+)")
"""A per-layer folder's name: its layer and its variant (``width_16k_l0_small_affine``)."""
CLT_FILE = re.compile(r"params_layer_(\d+)\.safetensors")
SKIP = "affine_skip_connection"
REQUIRED = ("w_enc", "b_enc", "threshold", "w_dec", "b_dec")
SAE_SITES = ("resid_post", "mlp_out", "attn_out")
"""The releases' SAE folders (``resid_post_all/layer_{i}_...``): the transcoders' layout, other tensors."""

Files = dict[int, Path]
"""A variant's parameter files by layer."""


def recognises(folder: Path) -> bool:
    """Whether ``folder`` holds Gemma Scope 2 transcoders (``transcoder_all``, ``clt``, a CLT variant or one layer)."""
    return bool(_per_layer_variants(folder) or _clt_variants(folder) or _one_layer(folder))


def _per_layer_variants(folder: Path) -> dict[str, Files]:
    """The per-layer variants in ``folder`` (``layer_{i}_{variant}/params.safetensors``)."""
    found: dict[str, Files] = {}
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = LAYER_FOLDER.fullmatch(sub.name)
        if match and (sub / PARAMS_FILE).is_file():
            found.setdefault(match.group(2), {})[int(match.group(1))] = sub / PARAMS_FILE
    return found


def _clt_files(folder: Path) -> Files:
    """A CLT variant folder's ``params_layer_{i}.safetensors`` by layer."""
    matches = [(CLT_FILE.fullmatch(p.name), p) for p in folder.glob("params_layer_*.safetensors")]
    return {int(m.group(1)): p for m, p in matches if m}


def _clt_variants(folder: Path) -> dict[str, Files]:
    """The CLT variants: ``folder`` itself, or its subfolders (the downloaded ``clt`` folder)."""
    if not folder.is_dir():
        return {}
    if own := _clt_files(folder):
        return {folder.name: own}
    return {sub.name: files for sub in sorted(folder.iterdir()) if sub.is_dir() and (files := _clt_files(sub))}


def _one_layer(folder: Path) -> bool:
    """Whether ``folder`` is one layer's folder of a per-layer variant."""
    return LAYER_FOLDER.fullmatch(folder.name) is not None and (folder / PARAMS_FILE).is_file()


def load_gemma_scope(
    folder: Path | str, norms: Norms | None, model_name: str = "", variant: str | None = None
) -> CrossLayerTranscoder:
    """Gemma Scope 2's transcoders in ``folder`` as ours, the model's MLP input norms folded in.

    Args:
        folder: The downloaded ``transcoder_all`` folder (``layer_{i}_{variant}`` folders), the
            ``clt`` folder (variant folders) or one CLT variant's folder.
        norms: The model's MLP input norms (``ln2.w`` and bias) per layer.
        model_name: Recorded as the transcoder's model.
        variant: The variant to read where the folder holds several (``width_16k_l0_small_affine``).

    Raises:
        CheckpointError: No norms, several variants and none chosen, an unknown variant, another
            model's transcoders, or files that are not Gemma Scope 2 transcoders.
    """
    folder = Path(folder)
    names = (folder.name, folder.parent.name) if _one_layer(folder) else (folder.name,)
    site = next((s for s in SAE_SITES for name in names if name in (s, f"{s}_all")), None)
    if site is not None:
        raise CheckpointError(
            f"{folder} holds Gemma Scope 2 SAEs of {site} (SAELens, too, tells them by the folder's name), not "
            "transcoders; download the release's transcoder_all (or clt) folder."
        )
    if norms is None:
        raise CheckpointError(
            f"{folder} holds Gemma Scope 2 transcoders, which read the pre-feedforward norm's output (its "
            "weight applied); they map onto a workbench transcoder only with that weight folded in. Load them "
            "with the model (load_transcoder(..., model=model)), and that model without folding layer norms."
        )
    if per_layer := _per_layer_variants(folder):
        return _read_per_layer(folder, _choose(folder, per_layer, variant), norms, model_name)
    if clt := _clt_variants(folder):
        return _read_clt(folder, _choose(folder, clt, variant), norms, model_name)
    if _one_layer(folder):
        raise CheckpointError(
            f"{folder} is one layer's Gemma Scope 2 transcoder; give the folder that holds every layer's "
            f"({folder.parent}), with the variant ({folder.name.split('_', 2)[-1]}) if it holds several."
        )
    raise CheckpointError(
        f"{folder} holds no Gemma Scope 2 transcoders (transcoder_all/layer_{{i}}_<variant>/params.safetensors "
        "or clt/<variant>/params_layer_{i}.safetensors)."
    )


def _choose(folder: Path, found: dict[str, Files], variant: str | None) -> Files:
    """The files of the variant asked for, or of the only one."""
    names = ", ".join(sorted(found))
    if variant is None and len(found) > 1:
        raise CheckpointError(
            f"{folder} holds {len(found)} Gemma Scope 2 variants: {names}. Choose one with "
            "--clt-train-load-variant (load_transcoder(..., variant=...))."
        )
    if variant is not None and variant not in found:
        raise CheckpointError(f"{folder} holds no Gemma Scope 2 variant {variant!r}; it holds {names}.")
    return found[variant] if variant is not None else next(iter(found.values()))


def _params(path: Path, layer: int) -> dict[str, torch.Tensor]:
    """One parameter file's tensors (float32), checked to be a transcoder's."""
    from safetensors.torch import load_file

    tensors = {k: v.float() for k, v in load_file(path).items()}
    absent = [k for k in REQUIRED if k not in tensors]
    if absent:
        raise CheckpointError(
            f"{path} lacks {', '.join(absent)} (it holds {', '.join(sorted(tensors))}); it is not a Gemma Scope 2 "
            "transcoder (SAEs of the residual, attention or MLP output have no place in a workbench transcoder)."
        )
    _check_config(path.parent / CONFIG_FILE, layer)
    return tensors


def _check_config(path: Path, layer: int) -> None:
    """Refuse a ``config.json`` beside the parameters that says they are not a transcoder of ``layer``'s MLP."""
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    wanted = {
        "architecture": "jump_relu",
        "hf_hook_point_in": f"layers.{layer}.pre_feedforward_layernorm.output",
        "hf_hook_point_out": f"layers.{layer}.post_feedforward_layernorm.output",
    }
    wrong = [f"{k} {cfg[k]!r}" for k, v in wanted.items() if k in cfg and not str(cfg[k]).endswith(v)]
    if wrong:
        raise CheckpointError(
            f"{path} has {', '.join(wrong)}: not a JumpReLU transcoder from layer {layer}'s pre-feedforward "
            "norm to its post-feedforward norm; give Gemma Scope 2's transcoder_all or clt folder."
        )


def _fits(folder: Path, norms: Norms, layers: int, d: int, exact: bool = False) -> None:
    """Refuse transcoders of another model: more layers (``exact``: other) or another width than ``norms``'."""
    model_layers, model_d = len(norms), norms[0][0].shape[0]
    if layers > model_layers or (exact and layers != model_layers) or d != model_d:
        raise CheckpointError(
            f"{folder} holds Gemma Scope 2 transcoders of a model of width {d} with {'' if exact else 'at least '}"
            f"{layers} layers; this model has {model_layers} layers of width {model_d}. Each Gemma 3 size has its "
            "own release (google/gemma-scope-2-270m-pt for Gemma 3 270M, ...-1b-pt for 1B, ...): download the one "
            "for this model, or pass --model the model they were made for."
        )


def _read_per_layer(folder: Path, files: Files, norms: Norms, model_name: str) -> CrossLayerTranscoder:
    """A per-layer variant as our per-layer transcoder (on the layers it has), one file in memory at a time."""
    loaded = {min(files): _params(files[min(files)], min(files))}
    d, F = loaded[min(files)]["w_enc"].shape
    _fits(folder, norms, max(files) + 1, d)
    L = len(norms)
    skip = any(_has_skip(path) for path in files.values())  # a layer without one adds nothing
    covered = tuple(sorted(files)) if len(files) < L else ()
    clt = CrossLayerTranscoder(CLTConfig(L, d, F, per_layer=True, model=model_name, layers=covered, skip=skip))
    with torch.no_grad():
        for layer, path in sorted(files.items()):
            t = loaded.pop(layer) if layer in loaded else _params(path, layer)
            _check_shapes(path, t, d, F, [(F, d)])
            _set_layer(clt, layer, t, norms[layer])
            clt.W_dec[layer][0] = t["w_dec"]
    return clt.eval()


def _has_skip(path: Path) -> bool:
    """Whether a parameter file holds an affine skip (read from its header only)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return SKIP in f.keys()


def _read_clt(folder: Path, files: Files, norms: Norms, model_name: str) -> CrossLayerTranscoder:
    """A CLT variant as our cross-layer transcoder, one file in memory at a time."""
    loaded = {min(files): _params(files[min(files)], min(files))}
    first = loaded[min(files)]
    d, F = first["w_enc"].shape
    L = first["w_dec"].shape[1] if first["w_dec"].dim() == 3 else 0  # w_dec [F, layers, d]
    _fits(folder, norms, L, d, exact=True)
    missing = [f"params_layer_{i}.safetensors" for i in range(L) if i not in files]
    if missing:
        raise CheckpointError(
            f"{folder}: a Gemma Scope 2 CLT needs params_layer_{{i}}.safetensors for every one of its {L} layers; "
            f"missing {', '.join(missing)}. Download the whole variant folder."
        )
    skip = any(_has_skip(path) for path in files.values())
    clt = CrossLayerTranscoder(CLTConfig(L, d, F, model=model_name, skip=skip))
    del first
    with torch.no_grad():
        for layer in range(L):
            t = loaded.pop(layer) if layer in loaded else _params(files[layer], layer)
            _check_shapes(files[layer], t, d, F, [(F, L, d), (F, L - layer, d)])
            _set_layer(clt, layer, t, norms[layer])
            w_dec = t["w_dec"][:, -(L - layer) :]  # targets layer..L-1 (earlier ones are never written)
            clt.W_dec[layer].copy_(w_dec.transpose(0, 1))  # [F, T, d] -> [T, F, d]
    return clt.eval()


def _check_shapes(path: Path, t: dict[str, torch.Tensor], d: int, F: int, w_dec: list[tuple[int, ...]]) -> None:
    """Refuse a file whose shapes are not the variant's (``w_dec`` may have any of the shapes given)."""
    expected = {
        "w_enc": [(d, F)],
        "b_enc": [(F,)],
        "threshold": [(F,)],
        "b_dec": [(d,)],
        "w_dec": w_dec,
        SKIP: [(d, d)],
    }
    wrong = [f"{k} {tuple(v.shape)}" for k, v in t.items() if k in expected and tuple(v.shape) not in expected[k]]
    if wrong:
        raise CheckpointError(
            f"{path}: {', '.join(wrong)}; expected {', '.join(f'{k} {v[0]}' for k, v in expected.items())} "
            "(a workbench transcoder has one width at every layer)."
        )


def _set_layer(
    clt: CrossLayerTranscoder, layer: int, t: dict[str, torch.Tensor], norm: tuple[torch.Tensor, torch.Tensor | None]
) -> None:
    """Layer ``layer``'s encoder, threshold, decoder bias and skip, the norm folded in."""
    clt.W_enc[layer], clt.b_enc[layer] = fold_norm(t["w_enc"], t["b_enc"], *norm)
    clt.log_threshold[layer] = log_threshold_after_relu(t["threshold"])
    clt.b_dec[layer] = t["b_dec"]
    if SKIP in t:
        add_skip(clt, layer, *fold_skip(t[SKIP], *norm))


def save_gemma_scope(clt: CrossLayerTranscoder, folder: Path | str, norms: Norms, variant: str | None = None) -> Path:
    """Write ``clt`` in Gemma Scope 2's layout, for a model whose MLP input norms are ``norms``.

    A per-layer transcoder is written as ``transcoder_all`` holds one
    (``folder/layer_{i}_{variant}/params.safetensors`` and ``config.json``, its covered layers),
    any other as ``clt`` holds one (``folder/{variant}/params_layer_{i}.safetensors``, ``w_dec
    [F, L, d]`` zero where ours has no decoder). The scales are folded in and the norm divided out,
    so the files read the norm's output, as Gemma Scope 2's do.

    Args:
        clt: The transcoder.
        folder: Where to write (made if missing).
        norms: The model's MLP input norms (``ln2.w`` and bias) per layer.
        variant: The variant's name (default ``width_{F}_workbench``, ``_affine`` added for a skip).

    Returns:
        ``folder``, which [`load_gemma_scope`][workbench.clt.formats.gemma_scope.load_gemma_scope] reads back.

    Raises:
        CheckpointError: Norms of another model, or a norm weight of 0 (nothing to divide by).
    """
    from safetensors.torch import save_file

    c = clt.config
    if len(norms) != c.n_layers or norms[0][0].shape[0] != c.d_model:
        raise CheckpointError(
            f"The transcoder has {c.n_layers} layers of width {c.d_model}; the model's norms are {len(norms)} of "
            f"{norms[0][0].shape[0]}. Write it with the model it was made for."
        )
    per_layer = all(c.targets(layer) == 1 for layer in range(c.n_layers))
    name = variant or f"width_{c.n_features}_workbench" + ("_affine" if clt.W_skip is not None else "")
    folder = Path(folder)
    with torch.no_grad():
        b_enc = covered_only(clt, clt.b_enc)
        for layer in c.covered if per_layer else range(c.n_layers):
            sub = folder / (f"layer_{layer}_{name}" if per_layer else name)
            sub.mkdir(parents=True, exist_ok=True)
            tensors = _layer_tensors(clt, layer, b_enc[layer], norms[layer], per_layer)
            save_file(to_cpu(tensors), sub / (PARAMS_FILE if per_layer else f"params_layer_{layer}.safetensors"))
            if per_layer:
                (sub / CONFIG_FILE).write_text(json.dumps(_config(clt, layer), indent=1), encoding="utf-8")
    return folder


def _layer_tensors(
    clt: CrossLayerTranscoder,
    layer: int,
    b_enc: torch.Tensor,
    norm: tuple[torch.Tensor, torch.Tensor | None],
    per_layer: bool,
) -> dict[str, torch.Tensor]:
    """Layer ``layer``'s Gemma Scope 2 tensors: scales folded in, the norm ``n * w + b`` divided out.

    Ours reads ``n = (x - b) / w``: ``n @ W == x @ (W / w[:, None]) - (b / w) @ W``.
    """
    weight, bias = norm[0].float().to(clt.b_dec.device), norm[1]
    if (weight == 0).any():
        raise CheckpointError(
            f"Layer {layer}'s norm weight is 0 in {int((weight == 0).sum())} dimensions: Gemma Scope 2's files read "
            "the norm's output, which holds nothing there, so this transcoder cannot be written as theirs."
        )
    shift = torch.zeros_like(weight) if bias is None else bias.float().to(weight) / weight
    W_enc = clt.W_enc[layer] * clt.in_scale[layer]
    zero = torch.zeros_like(clt.W_enc[layer].T)  # [F, d]: no decoder to an earlier layer
    targets = [layer] if per_layer else range(clt.config.n_layers)
    w_dec = [decoder(clt, layer, t) / clt.out_scale[t] if t >= layer else zero for t in targets]
    tensors = {
        "w_enc": W_enc / weight[:, None],
        "b_enc": b_enc - shift @ W_enc,
        "threshold": clt.threshold[layer],
        "w_dec": w_dec[0] if per_layer else torch.stack(w_dec, dim=1),
        "b_dec": clt.b_dec[layer] / clt.out_scale[layer],
    }
    if clt.W_skip is not None:
        tensors[SKIP] = clt.W_skip[layer] / weight[:, None]
        tensors["b_dec"] = tensors["b_dec"] - shift @ clt.W_skip[layer]
    return tensors


def _config(clt: CrossLayerTranscoder, layer: int) -> dict[str, object]:
    """The ``config.json`` beside layer ``layer``'s parameters (the fields SAELens reads)."""
    return {
        "architecture": "jump_relu",
        "model_name": clt.config.model,
        "hf_hook_point_in": f"model.layers.{layer}.pre_feedforward_layernorm.output",
        "hf_hook_point_out": f"model.layers.{layer}.post_feedforward_layernorm.output",
        "affine_connection": clt.W_skip is not None,
    }


__all__ = ["CONFIG_FILE", "PARAMS_FILE", "load_gemma_scope", "recognises", "save_gemma_scope"]
