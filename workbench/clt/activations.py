"""What a transcoder is trained on: every layer's (or some layers') MLP input and output at the
same tokens, read with hooks in one forward pass that stops after the last block read (the
unembedding never runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from workbench.clt.transcoder import mlp_in_hook, mlp_out_hook
from workbench.data.batching import iter_batches, pad_id_of
from workbench.lens.readout import wide


@torch.no_grad()
def mlp_io(
    model, tokens: torch.Tensor, keep: torch.Tensor | None = None, layers: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, outputs)``, each ``[tokens, L, d_model]`` (``L``: every layer, or ``layers``):
    ``blocks.{l}.ln2.hook_normalized`` and ``blocks.{l}.hook_mlp_out`` at the positions where
    ``keep [batch, pos]`` is true (all positions without it); float32 (or wider) whatever the
    model's dtype (a transcoder trains and reads in float32).
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
    model, documents: list[torch.Tensor], batch_tokens: int, layers: Sequence[int] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(inputs, outputs)`` rows of padded batches of ``documents`` (token lists, BOS first),
    without BOS (a fixed, huge-norm position a transcoder should not spend features on) and padding;
    every layer's, or those of ``layers``.
    """
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, model.cfg.device):
        keep = batch.mask.bool()
        keep[:, 0] = False
        yield mlp_io(model, batch.tokens, keep, layers)
