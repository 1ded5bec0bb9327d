"""How well a transcoder stands in for the MLPs, measured on held-out text.

* Per covered layer (a transcoder may leave some layers to the model): the fraction of variance
  unexplained (FVU: squared error of the reconstruction, a skip included, over the variance of the
  true MLP output about its mean), L0 (active features per token) and the share of features never
  active on the text (dead).
* The replacement model: every MLP output replaced, layer by layer, by the transcoder's
  reconstruction from the features of that and earlier layers, plus a skip transcoder's skip of
  that layer's own MLP input (the layers without features keep their MLPs), computed on the
  *replaced* model's own residual stream (hooks: encode at ``blocks.{l}.ln2.hook_normalized``,
  write at ``blocks.{l}.hook_mlp_out``). BOS keeps the model's own MLP output by default: the
  transcoder is neither trained nor read there (as in attribution graphs, where BOS's MLP output is
  an error node; SAELens's evaluations likewise exclude special tokens), and a reconstruction it never
  learned at Gemma's attention-sink position would cost most of the splice's loss (measured in
  docs/clt.md); ``keep_bos=False`` replaces it too. Its next-token loss against the original model's says what the
  errors cost downstream. The hooks are removed when the pass ends, also on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int

from workbench.clt.activations import document_rows
from workbench.clt.transcoder import CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.data.batching import iter_batches, pad_id_of
from workbench.lens.readout import next_token_losses
from workbench.models.model import model_device

if TYPE_CHECKING:
    from workbench.models.model import Model


@dataclass
class LayerQuality:
    """One layer's reconstruction quality on some text.

    Attributes:
        layer: The layer.
        fvu: The fraction of variance unexplained.
        l0: Active features per token.
        dead: The share of the layer's features never active.
    """

    layer: int
    fvu: float
    l0: float
    dead: float


@torch.no_grad()
def layer_quality(
    model: Model, clt: CrossLayerTranscoder, documents: list[Int[torch.Tensor, " pos"]], batch_tokens: int = 2048
) -> list[LayerQuality]:
    """FVU, L0 and dead share per covered layer over ``documents``.

    Args:
        model: The hooked model.
        clt: Its transcoder.
        documents: Token lists, BOS first (BOS is left out).
        batch_tokens: Padded tokens per forward batch.
    """
    L = clt.config.n_layers
    error = torch.zeros(L, dtype=torch.float64)
    total = torch.zeros(L, dtype=torch.float64)
    sums = torch.zeros(L, clt.config.d_model, dtype=torch.float64)
    active = torch.zeros(L, dtype=torch.float64)
    ever = torch.zeros(L, clt.config.n_features, dtype=torch.bool)
    rows = 0
    covered = list(clt.config.covered)
    for x, y in document_rows(model, documents, batch_tokens, covered):
        recon, acts = clt.compact_forward(x)
        error[covered] += (recon - y).double().pow(2).sum(dim=(0, 2)).cpu()
        total[covered] += y.double().pow(2).sum(dim=(0, 2)).cpu()
        sums[covered] += y.double().sum(0).cpu()
        active[covered] += (acts > 0).sum(dim=(0, 2)).double().cpu()
        ever[covered] |= (acts > 0).any(0).cpu()
        rows += len(x)
    variance = total - sums.pow(2).sum(-1) / max(rows, 1)  # sum of squared deviations from the mean
    return [
        LayerQuality(
            layer,
            float(error[layer] / variance[layer]),
            float(active[layer] / max(rows, 1)),
            float(1 - ever[layer].float().mean()),
        )
        for layer in clt.config.covered
    ]


@contextmanager
def replacement(
    model: Model,
    clt: CrossLayerTranscoder,
    keep_bos: bool = True,
    on_write: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Iterator[Model]:
    """The model with every covered layer's MLP output replaced by the transcoder's reconstruction (hooks).

    Layer ``l`` writes ``clt.reconstruct_layer(x_l, acts, l)``: its decoded features and, for a skip
    transcoder, the skip of its MLP input ``x_l`` (the one its encoder read). ``on_write(l, written,
    out)``, when given, sees each layer's reconstruction beside the MLP output the model computed on
    the same (replaced) stream, before BOS is restored.
    """
    acts: list[torch.Tensor] = [torch.zeros(0)] * clt.config.n_layers  # each set before it is read
    inputs: list[torch.Tensor] = [torch.zeros(0)] * clt.config.n_layers  # likewise: the MLP inputs read

    def encode(layer: int) -> Callable[..., None]:
        """The hook that reads layer ``layer``'s features (and keeps its MLP input for the skip)."""

        def hook(x: torch.Tensor, hook: object) -> None:
            inputs[layer] = x
            acts[layer] = clt.encode_layer(x, layer)

        return hook

    def write(layer: int) -> Callable[..., torch.Tensor]:
        """The hook that writes layer ``layer``'s reconstruction."""

        def hook(out: torch.Tensor, hook: object) -> torch.Tensor:
            written = clt.reconstruct_layer(inputs[layer], acts[: layer + 1], layer).to(out)
            if on_write is not None:
                on_write(layer, written, out)
            if keep_bos:  # every row starts with BOS: its MLP output stays the model's
                written = torch.cat([out[:, :1], written[:, 1:]], dim=1)
            return written

        return hook

    hooks = [(mlp_in_hook(layer), encode(layer)) for layer in clt.config.covered]
    hooks += [(mlp_out_hook(layer), write(layer)) for layer in clt.config.covered]
    with model.hooks(fwd_hooks=list(hooks)):  # a fresh list: TransformerLens types it wider
        yield model


@torch.no_grad()
def replacement_loss(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: list[Int[torch.Tensor, " pos"]],
    batch_tokens: int = 2048,
    keep_bos: bool = True,
) -> tuple[float, float]:
    """Mean next-token loss (nats) over ``documents`` (token lists, BOS first): ``(original, replacement)``.

    ``keep_bos``: [`replacement`][workbench.clt.quality.replacement]'s.
    """
    original, replaced = _losses(model, clt, documents, batch_tokens, (None, keep_bos))
    return original, replaced


@torch.no_grad()
def replacement_losses(
    model: Model, clt: CrossLayerTranscoder, documents: list[Int[torch.Tensor, " pos"]], batch_tokens: int = 2048
) -> tuple[float, float, float]:
    """``(original, replacement, replacement at BOS too)``: mean next-token losses in one pass over the batches."""
    original, kept, with_bos = _losses(model, clt, documents, batch_tokens, (None, True, False))
    return original, kept, with_bos


def _losses(
    model: Model,
    clt: CrossLayerTranscoder,
    documents: list[Int[torch.Tensor, " pos"]],
    batch_tokens: int,
    modes: tuple[bool | None, ...],
) -> list[float]:
    """Mean next-token loss per mode: None the model itself, else replaced with that ``keep_bos``."""
    sums = [0.0] * len(modes)
    count = 0
    for batch in iter_batches(documents, pad_id_of(model), batch_tokens, model_device(model)):
        real = batch.mask[:, 1:].bool()
        for i, keep_bos in enumerate(modes):
            with nullcontext() if keep_bos is None else replacement(model, clt, keep_bos):
                sums[i] += float(next_token_losses(model, batch.tokens)[real].sum())
        count += int(real.sum())
    return [total / max(count, 1) for total in sums]


__all__ = ["LayerQuality", "layer_quality", "replacement", "replacement_loss", "replacement_losses"]
