"""The local replacement model of one prompt (Ameisen et al. 2025, "Circuit Tracing").

The model's own forward pass with, by hooks:

* every attention pattern (``blocks.{l}.attn.hook_pattern``) and every norm's scale (every
  ``hook_scale``) frozen at its value on the prompt, so the map from the residual stream's inputs
  to any later point is affine (a stop-gradient in the backward pass);
* every MLP output (``blocks.{l}.hook_mlp_out``) replaced by what the transcoder writes there,
  from features read on the model's own MLP inputs, plus an *error node*: the true output minus
  that reconstruction. So the replacement model reproduces the model's forward pass exactly;
* the residual stream's start (``blocks.0.hook_resid_pre``: token embeddings, plus positional ones
  where the model has them) as the input nodes, one per position.

A skip transcoder's skip (``x @ W_skip[l]``, a linear map of layer ``l``'s MLP input) is no node:
the MLP input is the residual stream through the frozen norm, an affine map, so the skip is one
more linear path of the frozen model. At ``blocks.{l}.hook_mlp_out`` the frozen model writes
``writes[l] + x_l @ W_skip[l]``, with ``x_l`` the MLP input of that same frozen pass (the norm
fires before the MLP's output), and ``writes[l]`` holds the decoded features plus the error
(the error is net of the skip of the prompt's own MLP input). Gradients, and so direct effects,
pass through the skip like through attention's values, and a node's bias (every source zero)
includes the skip of the zero-source residual: completeness holds as without a skip.

No features are read at the BOS position (the transcoder never saw it in training): the error
node there holds the MLP's whole output (less the decoder bias and the skip).
[`read_prompt`][workbench.clt.graphs.local_replacement.read_prompt] reads what the replacement
model holds fixed; [`frozen_forward`][workbench.clt.graphs.local_replacement.frozen_forward] runs
it from other sources, which is what [`workbench.clt.graphs.attribution`][workbench.clt.graphs.attribution]
differentiates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from jaxtyping import Float, Int

from workbench.clt.transcoder import CrossLayerTranscoder, mlp_in_hook, mlp_out_hook
from workbench.lens.readout import wide

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

START = "blocks.0.hook_resid_pre"
"""The residual stream's start: the token nodes' values."""


def frozen_hook(name: str) -> bool:
    """Whether the local replacement model freezes the hook ``name``: patterns and the residual norms' scales.

    A q/k norm's scale (Gemma 3, Qwen 3) only feeds the pattern, frozen already.
    """
    if name.endswith("hook_pattern"):
        return True
    return name.endswith("hook_scale") and ".attn." not in name


@dataclass
class PromptState:
    """The model's pass over one prompt: what the local replacement model holds fixed and reads.

    Attributes:
        tokens: The prompt, BOS first.
        frozen: Hook name -> its value (patterns, norm scales), batch 1.
        start: The residual stream's start.
        acts: Feature activations (none at BOS).
        errors: MLP output minus the transcoder's reconstruction (decoded features and skip).
        writes: What the frozen model writes at each MLP output besides the skip: the decoded
            features plus the error. Without a skip that is the true MLP output, in the model's
            dtype; with one, the true output less the skip of the prompt's MLP input, in float32
            (or wider).
        mlp_in: The transcoder's inputs.
        final: The unembedding's input.
        logits: The logits at the last position.
        clt: The transcoder; its skip (if any) is part of the frozen forward.
    """

    tokens: Int[torch.Tensor, " pos"]
    frozen: dict[str, torch.Tensor]
    start: Float[torch.Tensor, "pos d_model"]
    acts: Float[torch.Tensor, "layer pos feature"]
    errors: Float[torch.Tensor, "layer pos d_model"]
    writes: Float[torch.Tensor, "layer pos d_model"]
    mlp_in: Float[torch.Tensor, "layer pos d_model"]
    final: Float[torch.Tensor, "pos d_model"]
    logits: Float[torch.Tensor, " d_vocab"]
    clt: CrossLayerTranscoder | None = None

    def skips(self, layer: int) -> bool:
        """Whether the frozen model adds a skip at ``layer``'s MLP output."""
        return self.clt is not None and self.clt.W_skip is not None and self.clt.config.covers(layer)


@torch.no_grad()
def read_prompt(model: HookedTransformer, clt: CrossLayerTranscoder, tokens: Int[torch.Tensor, " pos"]) -> PromptState:
    """One pass of the model over ``tokens`` (BOS first), with the transcoder's features and error nodes."""
    L = clt.config.n_layers
    wanted = (
        {START, f"blocks.{L - 1}.hook_resid_post"}
        | {mlp_in_hook(l) for l in range(L)}
        | {mlp_out_hook(l) for l in range(L)}
    )
    out, cache = model.run_with_cache(
        tokens[None], names_filter=lambda n: n in wanted or frozen_hook(n), device=model.cfg.device
    )
    logits = cast(torch.Tensor, out)  # run_with_cache returns the logits by default
    mlp_in = wide(torch.stack([cache[mlp_in_hook(l)][0] for l in range(L)]))
    writes = torch.stack([cache[mlp_out_hook(l)][0] for l in range(L)])  # the model's dtype: patched back in
    acts = torch.stack([clt.encode_layer(mlp_in[l], l) for l in range(L)])
    acts[:, 0] = 0  # no features at BOS
    recon = torch.stack([clt.decode_layer(list(acts[: l + 1]), l) for l in range(L)])
    errors = wide(writes) - recon
    if clt.W_skip is not None:  # the frozen model adds the skip itself: the writes leave it out
        skip = torch.stack([clt.skip_layer(cache[mlp_in_hook(l)][0], l) for l in range(L)])
        errors, writes = errors - skip, wide(writes) - skip
    final = wide(model.ln_final(cache[f"blocks.{L - 1}.hook_resid_post"])[0])
    frozen = {name: value for name, value in cache.items() if frozen_hook(name)}
    return PromptState(tokens, frozen, cache[START][0], acts, errors, writes, mlp_in, final, wide(logits[0, -1]), clt)


@contextmanager
def frozen_model(
    model: HookedTransformer,
    state: PromptState,
    start: Float[torch.Tensor, "batch pos d_model"],
    writes: list[Float[torch.Tensor, "batch pos d_model"]],
    mlp_in: list[Float[torch.Tensor, "batch pos d_model"]],
) -> Iterator[None]:
    """The local replacement model, as hooks on ``model`` (removed on exit).

    Args:
        model: The model ``state`` was read from.
        state: Its pass over the prompt: the patterns and scales held fixed, and the transcoder
            whose skip (if any) is added to each write.
        start: The residual stream's start (the token nodes' values).
        writes: Layer ``l``'s MLP output (less its skip), per layer.
        mlp_in: Each layer's MLP input is appended to it as it is computed.
    """
    B = start.shape[0]
    seen: dict[int, torch.Tensor] = {}  # layer -> its MLP input in this pass

    def fixed(value: torch.Tensor) -> Callable[..., torch.Tensor]:
        """A hook that returns ``value``, repeated over the batch."""
        return lambda x, hook: value.to(x.device).expand(B, *value.shape[1:])

    def record(layer: int) -> Callable[..., None]:
        """A hook that keeps layer ``layer``'s MLP input."""

        def hook(x: torch.Tensor, hook: object) -> None:
            seen[layer] = x
            mlp_in.append(x)

        return hook

    def write(layer: int, w: torch.Tensor) -> Callable[..., torch.Tensor]:
        """A hook that writes ``w`` (plus the skip of this pass's MLP input) at ``layer``'s MLP output."""
        clt = state.clt
        if clt is None or not state.skips(layer):
            return lambda x, hook: w.to(x)

        def hook(x: torch.Tensor, hook: object) -> torch.Tensor:
            skip = clt.skip_layer(seen[layer], layer)  # the transcoder's dtype: added wide, then cast
            return (w.to(skip) + skip).to(x)

        return hook

    hooks = [(name, fixed(value)) for name, value in state.frozen.items()]
    hooks += [(START, lambda x, hook: start.to(x))]  # float32 sources enter a half-precision model cast
    hooks += [(mlp_out_hook(l), write(l, w)) for l, w in enumerate(writes)]
    hooks += [(mlp_in_hook(l), record(l)) for l in range(len(writes))]
    with model.hooks(fwd_hooks=list(hooks)):  # a fresh list: TransformerLens types it wider
        yield


def frozen_forward(
    model: HookedTransformer,
    state: PromptState,
    start: Float[torch.Tensor, "batch pos d_model"],
    writes: list[Float[torch.Tensor, "batch pos d_model"]],
) -> tuple[list[Float[torch.Tensor, "batch pos d_model"]], Float[torch.Tensor, "batch pos d_model"]]:
    """Run the local replacement model.

    The arguments are [`frozen_model`][workbench.clt.graphs.local_replacement.frozen_model]'s.

    Returns:
        The MLP inputs per layer and the unembedding's input.
    """
    mlp_in: list[torch.Tensor] = []
    B, L = start.shape[0], len(writes)
    with frozen_model(model, state, start, writes, mlp_in):
        resid = model(state.tokens[None].expand(B, -1), stop_at_layer=L)
        final = model.ln_final(resid)
    return mlp_in, final


__all__ = ["START", "PromptState", "frozen_forward", "frozen_hook", "frozen_model", "read_prompt"]
