"""What the transcoder formats share: the refusal and the tensor helpers.

The pieces two or more of the format modules need: the model's MLP input norms (folded into the
encoders and skips of a transcoder that reads the norm's output), the log-threshold of a ReLU, a
skip written into ours, our decoder between two layers (zero where there is none), the encoder
biases of the covered layers only, and tensors made ready for a safetensors file.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeAlias

import torch
from jaxtyping import Float, Shaped

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.clt.transcoder import CrossLayerTranscoder
    from workbench.models.model import Model

Norms: TypeAlias = "list[tuple[torch.Tensor, torch.Tensor | None]]"
"""Per layer, the MLP input norm's weight ``[d_model]`` and bias (None: the norm has none)."""
RELU_LOG_THRESHOLD = math.log(torch.finfo(torch.float32).tiny)
"""The log-threshold of a ReLU: threshold 1.2e-38, the smallest normal float32 (``-inf`` would make
the threshold's gradient not a number)."""


class CheckpointError(WorkbenchError, ValueError):
    """A transcoder file that is not one we read, or that a workbench transcoder cannot reproduce."""


def model_facts(model: Model | None) -> tuple[Norms | None, bool | None]:
    """What a format needs to know of the model it will run on.

    Args:
        model: The hooked model, or None.

    Returns:
        The MLP input norms per layer (None where the model's norm weights are folded away or no
        model is given) and whether its MLPs have a norm after them (None: unknown).
    """
    if model is None:
        return None, None
    pairs = [(getattr(block.ln2, "w", None), getattr(block.ln2, "b", None)) for block in model.blocks]
    norms: Norms = [(w.detach(), None if b is None else b.detach()) for w, b in pairs if w is not None]
    return (norms if len(norms) == len(pairs) else None), any(hasattr(block, "ln2_post") for block in model.blocks)


def fold_norm(
    W_enc: Float[torch.Tensor, "d_model feature"],
    b_enc: Float[torch.Tensor, " feature"],
    weight: Float[torch.Tensor, " d_model"],
    bias: Float[torch.Tensor, " d_model"] | None = None,
) -> tuple[Float[torch.Tensor, "d_model feature"], Float[torch.Tensor, " feature"]]:
    """An encoder of the norm's output ``n * weight + bias`` as an encoder of ``n``.

    ``(n * w + b) @ W_enc + b_enc == n @ (w[:, None] * W_enc) + (b_enc + b @ W_enc)``.

    Returns:
        The folded ``(W_enc, b_enc)`` (``b_enc`` as it is without a bias).
    """
    if bias is not None:
        b_enc = b_enc + bias.float().to(W_enc.device) @ W_enc
    return weight.float().to(W_enc.device)[:, None] * W_enc, b_enc


def fold_skip(
    W_skip: Float[torch.Tensor, "d_model d_model"],
    weight: Float[torch.Tensor, " d_model"],
    bias: Float[torch.Tensor, " d_model"] | None = None,
) -> tuple[Float[torch.Tensor, "d_model d_model"], Float[torch.Tensor, " d_model"] | None]:
    """A skip ``x @ W_skip`` of the norm's output ``n * weight + bias`` as a skip of ``n`` and a constant.

    ``(n * w + b) @ W == n @ (w[:, None] * W) + b @ W``.

    Returns:
        The folded ``W_skip`` and the constant ``b @ W_skip`` (None without a bias).
    """
    constant = None if bias is None else bias.float().to(W_skip.device) @ W_skip.float()
    return weight.float().to(W_skip.device)[:, None] * W_skip.float(), constant


def log_threshold_after_relu(threshold: Float[torch.Tensor, " feature"]) -> Float[torch.Tensor, " feature"]:
    """Our log-threshold for ``relu(pre) * (pre > threshold)`` (SAELens's and Gemma Scope's JumpReLU).

    After the ReLU a threshold ``<= 0`` gates as 0 does: it becomes ``exp(RELU_LOG_THRESHOLD)``.
    """
    return threshold.float().log().nan_to_num(nan=RELU_LOG_THRESHOLD).clamp_min(RELU_LOG_THRESHOLD)


def add_skip(
    clt: CrossLayerTranscoder,
    layer: int,
    W_skip: Float[torch.Tensor, "d_model d_model"],
    constant: Float[torch.Tensor, " d_model"] | None = None,
) -> None:
    """Set ``layer``'s skip of ``clt`` (ours: ``x @ W_skip``, model units), its constant term into the decoder bias.

    ``b_dec`` is in the scaled units (decoding divides by ``out_scale``), so the constant goes in
    times ``out_scale[layer]``. Call it after setting ``b_dec[layer]``.
    """
    if clt.W_skip is None:
        raise CheckpointError("This transcoder has no skip (CLTConfig.skip is False); make it with skip=True.")
    with torch.no_grad():
        clt.W_skip[layer] = W_skip.float()
        if constant is not None:
            clt.b_dec[layer] += constant.float().to(clt.b_dec) * clt.out_scale[layer]


def decoder(clt: CrossLayerTranscoder, source: int, target: int) -> Float[torch.Tensor, "feature d_model"]:
    """Our decoder from ``source``'s features to ``target``'s MLP output: zeros where there is none."""
    k = target - source
    if k < clt.config.targets(source):
        return clt.W_dec[source][k]
    return clt.W_dec[source].new_zeros(clt.config.n_features, clt.config.d_model)


def covered_only(
    clt: CrossLayerTranscoder, b_enc: Float[torch.Tensor, "layer feature"]
) -> Float[torch.Tensor, "layer feature"]:
    """Encoder biases with the layers without features zeroed.

    So no feature fires there (their encoders are zero and the threshold positive) in a format
    that has no notion of such a layer.
    """
    mask = torch.tensor([clt.config.covers(layer) for layer in range(clt.config.n_layers)], device=b_enc.device)
    return b_enc * mask[:, None]


def to_cpu(tensors: dict[str, Shaped[torch.Tensor, "*shape"]]) -> dict[str, Float[torch.Tensor, "*shape"]]:
    """Tensors ready for a safetensors file: detached, float32, contiguous, on the CPU."""
    return {k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}


__all__ = [
    "RELU_LOG_THRESHOLD",
    "CheckpointError",
    "Norms",
    "add_skip",
    "covered_only",
    "decoder",
    "fold_norm",
    "fold_skip",
    "log_threshold_after_relu",
    "model_facts",
    "to_cpu",
]
