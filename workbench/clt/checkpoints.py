"""Transcoders saved by other tools, read into (and written from) a [`CrossLayerTranscoder`][workbench.clt.transcoder.CrossLayerTranscoder].

[`load_transcoder`][workbench.clt.checkpoints.load_transcoder] tells the format from the files in the folder(s) it is given and reads
ours (``config.json`` + ``clt.safetensors``), SAELens's ([`workbench.clt.saelens`][workbench.clt.saelens]), the CLT
paper's (featflow) and circuit-tracer's. The writers ([`save_featflow`][workbench.clt.checkpoints.save_featflow],
[`save_circuit_tracer`][workbench.clt.checkpoints.save_circuit_tracer]) make each layout from one of ours: the tests read them back, and they
let a workbench transcoder go to those tools.

**featflow** (arXiv 2511.10840's code, ``abirharrasse/MultilingualCLTs``, read at its only commit
``aca8cb0``: ``src/featflow/clt.py``, ``src/featflow/config/clt_config.py``,
``src/featflow/utils.py``, ``src/featflow/attribution/loading.py``). A folder with
``clt_cfg.json`` (pydantic ``CLTConfig.to_dict``: ``model_name``, ``d_in``, ``d_latent``,
``n_layers``, ``cross_layer_decoders``, ``dtype``, ``jumprelu_init_threshold``,
``jumprelu_bandwidth`` and training settings) and ``clt_weights.safetensors`` (the module's state
dict): ``W_enc [L, d, F]``, ``b_enc [L, F]``, ``log_threshold [L, F]``,
``estimated_norm_scaling_factor_in [L]``, ``_out [L]``, ``feature_count [L, F]`` (training only)
and, cross-layer, ``layer_mask [L, L(L+1)/2]`` (training only). Cross-layer: ``W_dec [L(L+1)/2,
F, d]``, ``b_dec [L(L+1)/2, d]``, block ``i`` from source ``l_idx[i]`` to target ``k_idx[i]`` of
``torch.triu_indices(L, L)``; ``decode`` adds each block's bias to its target (``index_add``), so
a target's bias is the sum of its blocks'. Per-layer: ``W_dec [L, F, d]``, ``b_dec [L, d]``.
Features are ``JumpReLU((x * scaling_in[l]) @ W_enc[l] + b_enc[l], exp(log_threshold))`` and the
reconstruction is ``decode(features) / scaling_out[target]`` (``replacement_forward``,
``ReplacementModel.feature_activations_with_error``) — our ``in_scale``/``out_scale`` exactly.
Where ``x`` is read the code does not agree with itself: the training store reads
``blocks.{l}.hook_resid_mid`` (``training/activations_store.py``, next to a "TODO: before or after
ln2.hook_normalized ????"), the replacement model and the attribution loader read
``ln2.hook_normalized`` (``causal_graph/replacement_model.py``, ``attribution/loading.py``), and
``replacement_forward`` reads ``ln2(resid_mid)`` (after the norm's weight). We follow the setup
notes and the attribution code: ``ln2.hook_normalized``, which is what our transcoder reads.

**circuit-tracer** (0.5.0 from PyPI, ``circuit_tracer/transcoder/single_layer_transcoder.py``,
``cross_layer_transcoder.py``, ``activation_functions.py``, ``utils/hf_utils.py``,
``utils/caching.py``, ``replacement_model/replacement_model_transformerlens.py``; the newer
``decoderesearch/circuit-tracer`` main adds only TopK). A folder with ``config.yaml``
(``model_kind``: ``transcoder_set`` or ``cross_layer_transcoder``; ``feature_input_hook``,
``feature_output_hook``, relative to ``blocks.{l}``; ``model_name`` optional; ``transcoders``: a
list of per-layer files, else ``layer_{i}.safetensors``; on main ``activation: relu|topk`` and
``k``). Per-layer (``load_relu_transcoder``/``load_transcoder``): ``layer_{i}.safetensors`` with
``W_enc [F, d]`` (``F.linear``: ``x @ W_enc.T``), ``W_dec [F, d]``, ``b_enc [F]``, ``b_dec [d]``,
optionally ``activation_function.threshold [F]`` (JumpReLU, else ReLU), ``W_skip [d, d]`` (adds
``x @ W_skip.T``) and ``k`` (TopK). Cross-layer (``load_clt``/``_load_state_dict``; layers =
number of ``W_enc_*.safetensors``): ``W_enc_{i}.safetensors`` with ``W_enc_{i} [F, d]``,
``b_enc_{i} [F]``, ``b_dec_{i} [d]`` (target ``i``'s bias) and optionally ``threshold_{i} [F]``
(JumpReLU when layer 0 has one, else ReLU); ``W_dec_{i}.safetensors`` with ``W_dec_{i} [F, L - i,
d]`` (to targets ``i..L-1``). Its JumpReLU is ``x * (x > threshold)`` with no ReLU before it, and
nothing is scaled. The hooks are looked up as ``blocks.{l}.<hook>``; ``mlp.hook_in``/
``mlp.hook_out`` are the MLP's own input (the norm's output) and output (before a post-MLP norm).

**What maps exactly, and what is refused.** Inputs: ``ln2.hook_normalized`` as it is;
``mlp.hook_in`` (the norm's output ``n * w + b``) after folding the norm's weight and bias into the
encoder (``W_enc' = w * W_enc``, ``b_enc' = b_enc + b @ W_enc``), which needs the model's norms;
anything else — ``hook_resid_mid`` above all, the residual before the norm, which no linear
encoder of the normalised input reproduces — is refused. Outputs: ``hook_mlp_out``, and
``mlp.hook_out`` on a model without a post-MLP norm. A threshold ``<= 0`` with no ReLU lets
negative pre-activations through, which a JumpReLU with positive threshold cannot; a threshold of
exactly 0 (and a plain ReLU) is a JumpReLU with threshold ``exp(RELU_LOG_THRESHOLD)`` (the smallest
normal float32, not ``-inf``, whose gradients and arithmetic are not numbers), negative ones are
refused. ``W_skip`` (a skip transcoder) and TopK are refused: ours has neither.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.errors import WorkbenchError

OURS = ("config.json", "clt.safetensors")
FEATFLOW_CFG, FEATFLOW_WEIGHTS = "clt_cfg.json", "clt_weights.safetensors"
CT_CONFIG = "config.yaml"
RELU_LOG_THRESHOLD = math.log(torch.finfo(torch.float32).tiny)  # threshold 1.2e-38: a ReLU in float32
NORM_INPUT, NORM_OUTPUT = "ln2.hook_normalized", "mlp.hook_in"  # circuit-tracer's names, under blocks.{l}
MLP_OUTPUTS = ("hook_mlp_out", "mlp.hook_out")
FORMATS = (
    "ours (config.json + clt.safetensors), featflow's (clt_cfg.json + clt_weights.safetensors), "
    "circuit-tracer's (config.yaml with layer_{i}.safetensors or W_enc_{i}/W_dec_{i}.safetensors), "
    "or SAELens transcoder folders (cfg.json + sae_weights.safetensors), one per layer"
)

Norms = list[tuple[torch.Tensor, torch.Tensor | None]]  # per layer: the MLP input norm's weight, bias


class CheckpointError(WorkbenchError, ValueError):
    """A transcoder checkpoint that is not one we read, or that a workbench transcoder cannot reproduce."""


# --------------------------------------------------------------------------- the entry point


def load_transcoder(
    source: Path | str | Sequence[Path | str], model_name: str = "", model: Any = None, device: str = "cpu"
) -> CrossLayerTranscoder:
    """The transcoder in ``source`` (a folder, or SAELens folders one per layer), whatever the format.

    ``model_name`` is recorded where the checkpoint names no model (a SAELens transcoder takes it
    as given); ``model`` (the hooked model it will run on) supplies the MLP input norms that a
    transcoder reading the norm's output needs folded in, and says whether the MLP has a norm
    after it. Check the result against the model with [`check_fits`][workbench.clt.transcoder.check_fits].
    """
    folders = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    kind = detect(folders)
    if kind == "saelens":
        clt = _load_saelens(folders, model_name, model)
    elif kind == "workbench":
        clt = CrossLayerTranscoder.load(folders[0])
    elif kind == "featflow":
        clt = load_featflow(folders[0], model_name)
    else:
        clt = load_circuit_tracer(folders[0], model_name, *_model_facts(model))
    return clt.to(device)


def detect(folders: list[Path]) -> str:
    """``workbench``, ``featflow``, ``circuit-tracer`` or ``saelens``, from the files present;
    refused with what was found when it is none of them.
    """
    from workbench.clt.saelens import CFG_FILE, WEIGHTS_FILE

    if not folders:
        raise CheckpointError(f"No transcoder folder given; give {FORMATS}.")
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise CheckpointError(f"No folder {', '.join(missing)}; give {FORMATS}.")
    if all((f / CFG_FILE).is_file() and (f / WEIGHTS_FILE).is_file() for f in folders):
        return "saelens"
    if len(folders) > 1:
        raise CheckpointError(
            f"Several folders are read only as SAELens transcoders (one per layer), but "
            f"{_contents(folders)}; give one folder of {FORMATS}."
        )
    folder = folders[0]
    if all((folder / name).is_file() for name in OURS):
        return "workbench"
    if (folder / FEATFLOW_CFG).is_file() and (folder / FEATFLOW_WEIGHTS).is_file():
        return "featflow"
    if any((folder / name).is_file() for name in (CT_CONFIG, "W_enc_0.safetensors", "layer_0.safetensors")):
        return "circuit-tracer"
    raise CheckpointError(f"{_contents(folders)}: no transcoder format the workbench reads. Give {FORMATS}.")


def _contents(folders: list[Path]) -> str:
    """What the folders hold, in words (for a refusal)."""

    def one(folder: Path) -> str:
        names = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return f"{folder} holds {shown or 'nothing'}"

    return "; ".join(one(f) for f in folders)


def _model_facts(model: Any) -> tuple[Norms | None, bool | None]:
    """The model's MLP input norms (None where they are folded away or no model is given) and
    whether its MLPs have a norm after them (None: unknown).
    """
    if model is None:
        return None, None
    norms = [(getattr(b.ln2, "w", None), getattr(b.ln2, "b", None)) for b in model.blocks]
    usable = (
        None
        if any(w is None for w, _ in norms)
        else [(w.detach(), None if b is None else b.detach()) for w, b in norms]
    )
    return usable, any(hasattr(block, "ln2_post") for block in model.blocks)


def _load_saelens(folders: list[Path], model_name: str, model: Any) -> CrossLayerTranscoder:
    """SAELens transcoders, with the norm weights folded in when they read the norm's output."""
    from workbench.clt.saelens import load_saelens, reads_norm_output

    weights = None
    if reads_norm_output(folders[0]):
        norms = _model_facts(model)[0]
        if norms is None:
            raise CheckpointError(
                f"{folders[0]} reads the MLP norm's output, but this model's norm weights are "
                "folded into its weights (or no model was given); load the model without "
                "folding layer norms."
            )
        weights = [w for w, _ in norms]
    return load_saelens(folders, model_name=model_name, norm_weights=weights)


# --------------------------------------------------------------------------- featflow


def load_featflow(folder: Path | str, model_name: str = "") -> CrossLayerTranscoder:
    """A featflow checkpoint (cross-layer or per-layer) as our transcoder, scales and all; its
    ``model_name`` is recorded (``model_name`` only where it names none).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / FEATFLOW_CFG).read_text(encoding="utf-8"))
    tensors = {k: v.float() for k, v in load_file(folder / FEATFLOW_WEIGHTS).items()}
    need = [
        "W_enc",
        "b_enc",
        "log_threshold",
        "W_dec",
        "b_dec",
        "estimated_norm_scaling_factor_in",
        "estimated_norm_scaling_factor_out",
    ]
    absent = [k for k in need if k not in tensors]
    if absent:
        raise CheckpointError(f"{folder / FEATFLOW_WEIGHTS} lacks {', '.join(absent)}; it is not a featflow CLT.")
    L, d, F = tensors["W_enc"].shape
    cross = bool(cfg.get("cross_layer_decoders", tensors["W_dec"].shape[0] != L))
    _check_featflow_shapes(folder, cfg, tensors, cross)
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
        for name in ("W_enc", "b_enc", "log_threshold"):
            getattr(clt, name).copy_(tensors[name])
        clt.in_scale.copy_(tensors["estimated_norm_scaling_factor_in"])
        clt.out_scale.copy_(tensors["estimated_norm_scaling_factor_out"])
        clt.b_dec.zero_()
        for i, (source, target) in enumerate(featflow_blocks(L, cross)):
            clt.W_dec[source][target - source].copy_(tensors["W_dec"][i])
            clt.b_dec[target] += tensors["b_dec"][i]  # a target's bias is the sum of its blocks'
    return clt.eval()


def featflow_blocks(n_layers: int, cross: bool = True) -> list[tuple[int, int]]:
    """Featflow's decoder blocks as ``(source, target)``: ``torch.triu_indices(L, L)`` order
    cross-layer, one block per layer per-layer.
    """
    if not cross:
        return [(layer, layer) for layer in range(n_layers)]
    rows, cols = torch.triu_indices(n_layers, n_layers)
    return list(zip(rows.tolist(), cols.tolist()))


def _check_featflow_shapes(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor], cross: bool) -> None:
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
    """Write ``clt`` as a featflow folder that featflow's ``CLT.load_from_pretrained`` accepts
    (with ``feature_count`` and ``layer_mask``, which its strict loading asks for). A per-layer
    one stays per-layer; any other is written cross-layer, with zero blocks where ours has no
    decoder (a window, layers without features): the same function.
    """
    from safetensors.torch import save_file

    c, L = clt.config, clt.config.n_layers
    cross = any(c.targets(layer) > 1 for layer in range(L))
    blocks = featflow_blocks(L, cross)
    with torch.no_grad():
        W_dec = torch.stack([_decoder(clt, s, t) for s, t in blocks])
        b_dec = torch.stack([clt.b_dec[t] if s == t else torch.zeros_like(clt.b_dec[t]) for s, t in blocks])
        tensors = {
            "W_enc": clt.W_enc,
            "b_enc": _covered_only(clt, clt.b_enc),
            "log_threshold": clt.log_threshold,
            "W_dec": W_dec,
            "b_dec": b_dec,
            "estimated_norm_scaling_factor_in": clt.in_scale,
            "estimated_norm_scaling_factor_out": clt.out_scale,
        }
        tensors = _cpu(tensors)
    tensors["feature_count"] = torch.zeros(L, c.n_features, dtype=torch.long)
    if cross:
        rows = torch.tensor([s for s, _ in blocks])
        tensors["layer_mask"] = (torch.arange(L)[:, None] == rows[None, :]).float()
    cfg = {
        "device": "cpu",
        "dtype": "float32",
        "seed": 0,
        "model_name": model_name or c.model,
        "d_in": c.d_model,
        "d_latent": c.n_features,
        "n_layers": L,
        "jumprelu_bandwidth": c.bandwidth,
        "jumprelu_init_threshold": c.threshold_init,
        "normalize_decoder": False,
        "dead_feature_window": 0,
        "cross_layer_decoders": cross,
        "context_size": 0,
        "l0_coefficient": 0.0,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / FEATFLOW_WEIGHTS)
    (folder / FEATFLOW_CFG).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return folder


def _decoder(clt: CrossLayerTranscoder, source: int, target: int) -> torch.Tensor:
    """Our decoder from ``source`` to ``target`` ``[F, d]``: zeros where there is none."""
    k = target - source
    if k < clt.config.targets(source):
        return clt.W_dec[source][k]
    return clt.W_dec[source].new_zeros(clt.config.n_features, clt.config.d_model)


def _covered_only(clt: CrossLayerTranscoder, b_enc: torch.Tensor) -> torch.Tensor:
    """Encoder biases with the layers without features zeroed, so no feature fires there (their
    encoders are zero and the threshold positive) where a format has no notion of such a layer.
    """
    mask = torch.tensor([clt.config.covers(layer) for layer in range(clt.config.n_layers)], device=b_enc.device)
    return b_enc * mask[:, None]


# --------------------------------------------------------------------------- circuit-tracer


def load_circuit_tracer(
    folder: Path | str, model_name: str = "", norms: Norms | None = None, post_mlp_norm: bool | None = None
) -> CrossLayerTranscoder:
    """circuit-tracer's per-layer transcoders or CLT (a folder with ``config.yaml``) as our
    transcoder with unit scales. ``norms``: the model's MLP input norms (weight, bias) per layer,
    folded into the encoders of a transcoder that reads ``mlp.hook_in``; ``post_mlp_norm``:
    whether the model's MLPs have a norm after them (``mlp.hook_out`` is then not ``hook_mlp_out``).
    """
    folder = Path(folder)
    config = _ct_config(folder)
    fold = _ct_input(folder, config, norms)
    _ct_output(folder, config, post_mlp_norm)
    if config.get("activation") == "topk" or "k" in config:
        raise CheckpointError(
            f"{folder} holds TopK transcoders; a workbench transcoder's JumpReLU cannot keep "
            "the k largest features. Use JumpReLU or ReLU transcoders."
        )
    kind = config.get("model_kind")
    if kind == "transcoder_set":
        layers = [_ct_layer(path, i) for i, path in enumerate(_ct_layer_files(folder, config))]
    elif kind == "cross_layer_transcoder":
        layers = _ct_clt_layers(folder)
    else:
        raise CheckpointError(
            f"{folder / CT_CONFIG} has model_kind {kind!r}; circuit-tracer's are "
            "'transcoder_set' and 'cross_layer_transcoder'."
        )
    if config.get("activation") == "relu":  # circuit-tracer then ignores any threshold in the files
        layers = [{**layer, "threshold": None} for layer in layers]
    return _ct_build(folder, layers, kind == "transcoder_set", config.get("model_name") or model_name, fold)


def _ct_config(folder: Path) -> dict:
    """``config.yaml``: required, since without it the hooks the features read are unknown."""
    path = folder / CT_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{folder} has circuit-tracer transcoder files but no {CT_CONFIG}, so which point they read is unknown "
            "(circuit-tracer's default is hook_resid_mid, which a workbench transcoder cannot read). Add a "
            f"{CT_CONFIG} with model_kind, feature_input_hook (ln2.hook_normalized or mlp.hook_in) and "
            "feature_output_hook (hook_mlp_out)."
        )
    import yaml  # PyYAML: a dependency of transformers

    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a mapping of settings; it is not a circuit-tracer config.")
    return config


def _ct_input(folder: Path, config: dict, norms: Norms | None) -> Norms | None:
    """The norms to fold into the encoders (None: the input is ``ln2.hook_normalized`` as it is)."""
    hook = config.get("feature_input_hook")
    if hook == NORM_INPUT:
        return None
    if hook == NORM_OUTPUT:
        if norms is None:
            raise CheckpointError(
                f"{folder} reads {hook} (the MLP norm's output, after its weight and bias); it "
                "maps onto a workbench transcoder only with that norm folded in. Load it with the "
                "model (load_transcoder(..., model=model)), and that model without folding "
                "layer norms."
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


def _ct_output(folder: Path, config: dict, post_mlp_norm: bool | None) -> None:
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
        f"{folder} writes blocks.{{l}}.{hook}; a workbench transcoder reconstructs the MLP output "
        f"({', '.join(MLP_OUTPUTS)})."
    )


def _ct_layer_files(folder: Path, config: dict) -> list[Path]:
    """The per-layer files, in layer order: ``transcoders`` in the config, else ``layer_{i}.safetensors``."""
    if "transcoders" in config:
        paths = [str(p) for p in config["transcoders"]]
        remote = [p for p in paths if p.startswith("hf://")]
        if remote:
            raise CheckpointError(
                f"{folder / CT_CONFIG} names files on the hub ({remote[0]}, ...); download them "
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


def _ct_layer(path: Path, layer: int) -> dict[str, torch.Tensor | None]:
    """One per-layer transcoder file as ``W_enc [F, d]``, ``b_enc``, ``threshold`` (or None),
    ``W_dec [F, 1, d]``, ``b_dec``.
    """
    from safetensors.torch import load_file

    t = load_file(path)
    if "W_skip" in t:
        raise CheckpointError(
            f"{path} is a skip transcoder (W_skip adds x @ W_skip.T to the output); a workbench "
            "transcoder has no skip connection. Use transcoders without one."
        )
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
    }


def _ct_clt_layers(folder: Path) -> list[dict[str, torch.Tensor | None]]:
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
    layers = []
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
            }
        )
    return layers


def _require(path: Path, tensors: dict, keys: list[str]) -> None:
    absent = [k for k in keys if k not in tensors]
    if absent:
        raise CheckpointError(
            f"{path} lacks {', '.join(absent)} (it holds {', '.join(sorted(tensors))}); it is not "
            "a circuit-tracer transcoder file."
        )


def _ct_build(
    folder: Path, layers: list[dict], per_layer: bool, model: str, fold: Norms | None
) -> CrossLayerTranscoder:
    """Our transcoder from circuit-tracer's per-layer tensors (no scales: they are 1)."""
    L = len(layers)
    F, d = layers[0]["W_enc"].shape
    if fold is not None and len(fold) != L:
        raise CheckpointError(
            f"The transcoder has {L} layers; the model has {len(fold)}. Use a transcoder made for "
            "this model (or --model the one it was made for)."
        )
    config = CLTConfig(L, d, F, per_layer=per_layer, model=model)
    clt = CrossLayerTranscoder(config)
    with torch.no_grad():
        for i, t in enumerate(layers):
            _check_layer(folder, i, t, config)
            W_enc = t["W_enc"].float().T  # [d, F]
            b_enc = t["b_enc"].float()
            if fold is not None:
                w, b = fold[i]
                if b is not None:
                    b_enc = b_enc + b.float().to(W_enc.device) @ W_enc
                W_enc = w.float().to(W_enc.device)[:, None] * W_enc
            clt.W_enc[i], clt.b_enc[i] = W_enc, b_enc
            clt.log_threshold[i] = _log_threshold(folder, i, t["threshold"], F)
            clt.W_dec[i].copy_(t["W_dec"].float().transpose(0, 1))  # [F, T, d] -> [T, F, d]
            clt.b_dec[i] = t["b_dec"].float()
    return clt.eval()


def _check_layer(folder: Path, layer: int, t: dict, config: CLTConfig) -> None:
    """Refuse a layer whose shapes are not those of the first (a workbench transcoder has one width)."""
    F, d, T = config.n_features, config.d_model, config.targets(layer)
    expected = {"W_enc": (F, d), "b_enc": (F,), "b_dec": (d,), "W_dec": (F, T, d)}
    if t["threshold"] is not None:
        expected["threshold"] = (F,)
    wrong = [f"{k} {tuple(t[k].shape)} (expected {s})" for k, s in expected.items() if tuple(t[k].shape) != s]
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
    """Write ``clt`` in circuit-tracer's layout (scales folded in; it reads ``ln2.hook_normalized``
    and writes ``hook_mlp_out``): per-layer transcoders as ``layer_{i}.safetensors``, any other as
    a CLT (``W_enc_{i}``/``W_dec_{i}.safetensors``, zero decoders where ours has none).
    """
    from safetensors.torch import save_file

    c, L = clt.config, clt.config.n_layers
    per_layer = all(c.targets(layer) == 1 for layer in range(L))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        b_enc = _covered_only(clt, clt.b_enc)
        for i in range(L):
            W_enc = (clt.W_enc[i] * clt.in_scale[i]).T
            decoders = [_decoder(clt, i, k) / clt.out_scale[k] for k in range(i, i + 1 if per_layer else L)]
            W_dec, b_dec = torch.stack(decoders, dim=1), clt.b_dec[i] / clt.out_scale[i]  # [F, T, d]
            if per_layer:
                tensors = {
                    "W_enc": W_enc,
                    "W_dec": W_dec[:, 0],
                    "b_enc": b_enc[i],
                    "b_dec": b_dec,
                    "activation_function.threshold": clt.threshold[i],
                }
                save_file(_cpu(tensors), folder / f"layer_{i}.safetensors")
            else:
                enc = {
                    f"W_enc_{i}": W_enc,
                    f"b_enc_{i}": b_enc[i],
                    f"b_dec_{i}": b_dec,
                    f"threshold_{i}": clt.threshold[i],
                }
                save_file(_cpu(enc), folder / f"W_enc_{i}.safetensors")
                save_file(_cpu({f"W_dec_{i}": W_dec}), folder / f"W_dec_{i}.safetensors")
    config = {
        "model_name": model_name or c.model,
        "model_kind": "transcoder_set" if per_layer else "cross_layer_transcoder",
        "feature_input_hook": NORM_INPUT,
        "feature_output_hook": "hook_mlp_out",
    }
    (folder / CT_CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")  # JSON is YAML
    return folder


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}


__all__ = [
    "CheckpointError",
    "RELU_LOG_THRESHOLD",
    "detect",
    "featflow_blocks",
    "load_circuit_tracer",
    "load_featflow",
    "load_transcoder",
    "save_circuit_tracer",
    "save_featflow",
]
