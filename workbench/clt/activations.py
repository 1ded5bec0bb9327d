"""What a transcoder is trained on: every layer's (or some layers') MLP input and output at the same tokens.

Read with hooks in one forward pass that stops after the last block read (the unembedding never
runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int

from workbench.clt.transcoder import mlp_in_hook, mlp_out_hook
from workbench.data.batching import iter_batches, pad_id_of
from workbench.lens.readout import wide
from workbench.models.model import model_device

if TYPE_CHECKING:
    from workbench.models.model import Model


@torch.no_grad()
def mlp_io(
    model: Model,
    tokens: Int[torch.Tensor, "batch pos"],
    keep: Bool[torch.Tensor, "batch pos"] | None = None,
    layers: Sequence[int] | None = None,
) -> tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]:
    """The MLP inputs and outputs of ``tokens``, one row per kept position.

    ``blocks.{l}.ln2.hook_normalized`` and ``blocks.{l}.hook_mlp_out``, in float32 (or wider)
    whatever the model's dtype: a transcoder trains and reads in float32.

    Args:
        model: The hooked model.
        tokens: Token ids.
        keep: The positions to keep (default: all of them).
        layers: The layers read (default: every one); ``layer`` in the shapes counts these.

    Returns:
        ``(inputs, outputs)``.
    """
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = {mlp_in_hook(layer) for layer in layers} | {mlp_out_hook(layer) for layer in layers}
    _, cache = model.run_with_cache(
        tokens, names_filter=lambda name: name in names, stop_at_layer=max(layers) + 1, device=model.cfg.device
    )  # every layer's rows on one device
    inputs = torch.stack([wide(cache[mlp_in_hook(layer)]) for layer in layers], dim=-2)
    outputs = torch.stack([wide(cache[mlp_out_hook(layer)]) for layer in layers], dim=-2)
    if keep is None:
        return inputs.flatten(0, 1), outputs.flatten(0, 1)
    return inputs[keep], outputs[keep]


def document_rows(
    model: Model, documents: list[Int[torch.Tensor, " pos"]], batch_tokens: int, layers: Sequence[int] | None = None
) -> Iterator[tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]]:
    """The ``(inputs, outputs)`` rows of [`mlp_io`][workbench.clt.activations.mlp_io], batch by batch.

    Without BOS (a fixed, huge-norm position a transcoder should not spend features on) and padding.

    Args:
        model: The hooked model.
        documents: Token lists, BOS first.
        batch_tokens: Padded tokens per forward batch.
        layers: The layers read (default: every one).
    """
    device = model_device(model)
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, device):
        keep = batch.mask.bool()
        keep[:, 0] = False
        yield mlp_io(model, batch.tokens, keep, layers)
