"""A cross-layer transcoder (CLT): sparse features that replace a model's MLPs.

Per layer ``l``, an encoder reads the MLP's input (``blocks.{l}.ln2.hook_normalized``, the
normalised residual) into ``n_features`` JumpReLU features; feature ``f`` of layer ``l`` has a
decoder to the MLP output (``blocks.{l'}.hook_mlp_out``) of its own and every later layer
``l' >= l``, so layer ``l'``'s reconstruction is the sum over ``l <= l'`` of
``acts[l] @ W_dec[l][l' - l]`` plus a bias (arXiv 2511.10840's setup; Ameisen et al. 2025, "Circuit
Tracing"). With ``per_layer`` a feature writes only to its own layer: a plain per-layer transcoder;
with ``window = K`` to its own and the next ``K`` layers (a windowed CLT).

With ``skip`` it is a *skip transcoder* (Gemma Scope 2's ``_affine`` transcoders, SAELens's
``jumprelu_skip_transcoder``, circuit-tracer's ``W_skip``): each covered layer also writes
``x @ W_skip[l]``, a linear map of its own MLP input ``x`` (model units), beside the features. A
least-squares fit of it ([`workbench.clt.skip`][workbench.clt.skip]) takes what a linear map can;
the sparse features then model the rest.

A transcoder may cover only some ``layers``. The others have no features (their parameters are zero
and stay zero): the replacement model leaves their MLPs as they are, an attribution graph holds
their whole MLP output as an error node, and no decoder writes into them.

Inputs and targets are scaled per layer by a scalar (``sqrt(d_model)`` over their mean norm,
estimated from data with
[`CrossLayerTranscoder.set_scales`][workbench.clt.transcoder.CrossLayerTranscoder.set_scales]), so
one sparsity coefficient suits every layer; ``forward`` takes and returns the model's own units.

A transcoder keeps its own precision (float32) whatever the model's: it casts the MLP inputs it
reads to its own dtype and device, and whoever writes its reconstruction into a model casts it to
the model's. Its files are [`workbench.clt.formats.ours`][workbench.clt.formats.ours].

The features' activation is [`workbench.clt.jumprelu`][workbench.clt.jumprelu]; the training
loss is [`workbench.clt.training.loss`][workbench.clt.training.loss].
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import nn

from workbench.clt.jumprelu import jump_relu

if TYPE_CHECKING:
    from workbench.models.model import Model

CONFIG_FILE, WEIGHTS_FILE = "config.json", "clt.safetensors"  # a saved transcoder's files

THRESHOLD_INIT = 0.03
"""A new transcoder's JumpReLU threshold, every feature's."""
BANDWIDTH = 1.0
"""The width ``eps`` of the threshold's rectangle kernel, in the scaled units."""


def mlp_in_hook(layer: int) -> str:
    """Where a CLT reads layer ``layer``: the MLP's normalised input."""
    return f"blocks.{layer}.ln2.hook_normalized"


def mlp_out_hook(layer: int) -> str:
    """What a CLT reconstructs at layer ``layer``: the MLP's output."""
    return f"blocks.{layer}.hook_mlp_out"


@dataclass(frozen=True)
class CLTConfig:
    """A transcoder's shape and the model it was made for."""

    n_layers: int
    d_model: int
    n_features: int  # per layer
    per_layer: bool = False  # decoders to the feature's own layer only
    threshold_init: float = THRESHOLD_INIT
    bandwidth: float = BANDWIDTH  # eps of the rectangle kernel, in the scaled units
    model: str = ""  # the model's name, checked when the CLT is used on a model
    window: int | None = None  # a feature writes its own and the next `window` layers (None: every later one)
    layers: tuple[int, ...] = ()  # the layers with features (empty: all of them)
    skip: bool = False  # an affine skip from each covered layer's MLP input to its output

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_features) < 1:
            raise ValueError(f"A CLT needs positive layers, d_model and features; got {self}.")
        if self.window is not None and self.window < 0:
            raise ValueError(
                f"A CLT's window is the number of later layers a feature writes to, >= 0; got {self.window}."
            )
        if self.per_layer and self.window not in (None, 0):
            raise ValueError(f"A per-layer transcoder writes its own layer only; window={self.window} contradicts it.")
        layers = tuple(sorted({int(layer) for layer in self.layers}))
        if any(not 0 <= layer < self.n_layers for layer in layers):
            raise ValueError(f"Layers {list(layers)} are not all in 0..{self.n_layers - 1}.")
        object.__setattr__(self, "layers", layers)  # a list read from JSON becomes the tuple it was

    def targets(self, layer: int) -> int:
        """How many layers a feature of ``layer`` has decoders to (its own first)."""
        span = 0 if self.per_layer else self.window
        return self.n_layers - layer if span is None else min(span + 1, self.n_layers - layer)

    @property
    def covered(self) -> tuple[int, ...]:
        """The layers with features, in order."""
        return self.layers or tuple(range(self.n_layers))

    def covers(self, layer: int) -> bool:
        """Whether ``layer`` has features."""
        return layer in self.covered

    def writes(self, source: int, target: int) -> bool:
        """Whether features of ``source`` write to ``target``'s MLP output (both covered, in reach)."""
        return self.covers(source) and self.covers(target) and 0 <= target - source < self.targets(source)

    @property
    def kind(self) -> str:
        """In words: per-layer, windowed or cross-layer, and over which layers."""
        span = 0 if self.per_layer else self.window
        kind = (
            "per-layer transcoders"
            if span == 0
            else "a cross-layer transcoder"
            if span is None
            else f"a windowed cross-layer transcoder (each feature writes its own and the next {span} layers)"
        )
        if self.skip:
            kind = kind.replace("transcoder", "skip transcoder", 1)
        if self.layers and len(self.layers) < self.n_layers:
            kind += f" on layers {', '.join(map(str, self.layers))} of {self.n_layers}"
        return kind


def _decode_plan(config: CLTConfig) -> list[tuple[int, torch.Tensor, torch.Tensor, list[int]]]:
    """Per decoder offset ``k``, who writes ``k`` layers on.

    ``(k, sources, targets, layers)``: the positions (in ``config.covered``) of the sources and of
    their targets, and the source layers themselves.
    """
    position = {layer: i for i, layer in enumerate(config.covered)}
    plan = []
    for k in range(max(config.targets(layer) for layer in config.covered)):
        layers = [layer for layer in config.covered if config.writes(layer, layer + k)]
        if layers:
            plan.append(
                (
                    k,
                    torch.tensor([position[l] for l in layers]),
                    torch.tensor([position[l + k] for l in layers]),
                    layers,
                )
            )
    return plan


class CrossLayerTranscoder(nn.Module):
    """Encoders per layer, decoders from each layer to itself and the later layers it reaches.

    Args:
        config: The shape.
        seed: Seeds the random encoders and decoders (uniform, scaled by ``1 / sqrt(d_model)`` and
            ``1 / sqrt(n_features * n_layers)``); biases start at 0, thresholds at
            ``config.threshold_init``, scales at 1.
    """

    W_enc: nn.Parameter  # [L, d, F]
    b_enc: nn.Parameter  # [L, F]
    log_threshold: nn.Parameter  # [L, F]
    W_dec: nn.ParameterList  # W_dec[l][k]: [F, d] from layer l's features to layer l + k
    b_dec: nn.Parameter  # [L, d]
    in_scale: torch.Tensor  # [L] (a buffer)
    out_scale: torch.Tensor  # [L] (a buffer)
    W_skip: nn.Parameter | None  # [L, d, d] in model units, with config.skip (else None)

    def __init__(self, config: CLTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        L, d, F = config.n_layers, config.d_model, config.n_features
        generator = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(d)
        self.W_enc = nn.Parameter((torch.rand(L, d, F, generator=generator) * 2 - 1) * bound)
        self.b_enc = nn.Parameter(torch.zeros(L, F))
        self.log_threshold = nn.Parameter(torch.full((L, F), math.log(config.threshold_init)))
        dec_bound = 1 / math.sqrt(F * L)
        self.W_dec = nn.ParameterList(
            nn.Parameter((torch.rand(config.targets(l), F, d, generator=generator) * 2 - 1) * dec_bound)
            for l in range(L)
        )  # W_dec[l][k]: from layer l's features to layer l + k
        self.b_dec = nn.Parameter(torch.zeros(L, d))
        self.register_buffer("in_scale", torch.ones(L))
        self.register_buffer("out_scale", torch.ones(L))
        self.W_skip = nn.Parameter(torch.zeros(L, d, d)) if config.skip else None
        self.clear_uncovered()
        self._plan = _decode_plan(config)

    @torch.no_grad()
    def clear_uncovered(self) -> None:
        """Zero what a layer without features would have: its encoder, its decoder bias, every decoder into it.

        Called on construction and loading; call it after setting parameters by hand.
        """
        for layer in range(self.config.n_layers):
            if not self.config.covers(layer):
                self.W_enc[layer].zero_()
                self.b_dec[layer].zero_()
                if self.W_skip is not None:
                    self.W_skip[layer].zero_()
            for k in range(self.config.targets(layer)):
                if not self.config.writes(layer, layer + k):
                    self.W_dec[layer][k].zero_()

    @property
    def threshold(self) -> Float[torch.Tensor, "layer feature"]:
        """Every feature's JumpReLU threshold."""
        return self.log_threshold.exp()

    @property
    def index(self) -> Int[torch.Tensor, " covered"] | slice:
        """The covered layers as an index into the layer axis (a slice when all are: no copies)."""
        if len(self.config.covered) == self.config.n_layers:
            return slice(None)
        return torch.tensor(self.config.covered, device=self.b_dec.device)

    def pre_activations(self, x: Float[torch.Tensor, "... layer d_model"]) -> Float[torch.Tensor, "... layer feature"]:
        """The encoder outputs before JumpReLU of MLP inputs ``x``; zero at layers without features."""
        return self._full(self.compact_pre_activations(x[..., list(self.config.covered), :]))

    def compact_pre_activations(
        self, x: Float[torch.Tensor, "... covered d_model"]
    ) -> Float[torch.Tensor, "... covered feature"]:
        """The covered layers' encoder outputs before JumpReLU, from their MLP inputs ``x``."""
        idx = self.index
        scaled = x.to(self.W_enc) * self.in_scale[idx, None]
        return torch.einsum("...ld,ldf->...lf", scaled, self.W_enc[idx]) + self.b_enc[idx]

    def encode(self, x: Float[torch.Tensor, "... layer d_model"]) -> Float[torch.Tensor, "... layer feature"]:
        """Feature activations of the MLP inputs ``x`` (none at layers without features)."""
        return self._full(self.compact_encode(x[..., list(self.config.covered), :]))

    def compact_encode(
        self, x: Float[torch.Tensor, "... covered d_model"]
    ) -> Float[torch.Tensor, "... covered feature"]:
        """The covered layers' feature activations from their MLP inputs ``x``."""
        return jump_relu(self.compact_pre_activations(x), self.threshold[self.index], self.config.bandwidth)

    def decode(self, acts: Float[torch.Tensor, "... layer feature"]) -> Float[torch.Tensor, "... layer d_model"]:
        """Reconstructed MLP outputs (model units) from feature activations; zero at layers without features."""
        return self._full(self.compact_decode(acts[..., list(self.config.covered), :]))

    def compact_decode(
        self, acts: Float[torch.Tensor, "... covered feature"]
    ) -> Float[torch.Tensor, "... covered d_model"]:
        """The covered layers' reconstructions (model units) from their activations.

        One batched product per decoder offset, not one per layer pair.
        """
        idx = self.index
        n = len(self.config.covered)
        out = self.b_dec[idx]
        for k, sources, targets, layers in self._plan:
            weights = torch.stack([self.W_dec[layer][k] for layer in layers])  # [pairs, F, d]
            written = torch.einsum("...nf,nfd->...nd", acts[..., sources.to(acts.device), :], weights)
            if len(layers) == n:  # every covered layer writes k on: no gaps to fill
                out = out + written
            else:
                pad = written.new_zeros(*written.shape[:-2], n, written.shape[-1])
                out = out + pad.index_copy(-2, targets.to(written.device), written)
        return out / self.out_scale[idx, None]

    def _full(self, compact: torch.Tensor) -> torch.Tensor:
        """``[..., n, X]`` over the covered layers -> ``[..., L, X]``, zero elsewhere."""
        if len(self.config.covered) == self.config.n_layers:
            return compact
        out = compact.new_zeros(*compact.shape[:-2], self.config.n_layers, compact.shape[-1])
        out[..., list(self.config.covered), :] = compact
        return out

    def layer_pre_activations(
        self, x: Float[torch.Tensor, "... d_model"], layer: int
    ) -> Float[torch.Tensor, "... feature"]:
        """Layer ``layer``'s encoder outputs before JumpReLU, from its MLP input ``x``."""
        return (x.to(self.W_enc) * self.in_scale[layer]) @ self.W_enc[layer] + self.b_enc[layer]

    def encode_layer(self, x: Float[torch.Tensor, "... d_model"], layer: int) -> Float[torch.Tensor, "... feature"]:
        """Layer ``layer``'s feature activations from its MLP input ``x`` (zeros at a layer without features)."""
        if not self.config.covers(layer):
            return x.new_zeros(*x.shape[:-1], self.config.n_features)
        return jump_relu(self.layer_pre_activations(x, layer), self.threshold[layer], self.config.bandwidth)

    def decode_layer(
        self, acts: Sequence[Float[torch.Tensor, "... feature"]], layer: int
    ) -> Float[torch.Tensor, "... d_model"]:
        """Layer ``layer``'s reconstructed MLP output: what the replacement model writes there.

        Args:
            acts: The feature activations of layers ``0..layer`` (at least), by layer.
            layer: The layer written (zero when it has no features).
        """
        if not self.config.covers(layer):
            return acts[layer].new_zeros(*acts[layer].shape[:-1], self.config.d_model)
        out = self.b_dec[layer]
        for source in range(layer + 1):
            if self.config.writes(source, layer):
                out = out + acts[source] @ self.W_dec[source][layer - source]
        return out / self.out_scale[layer]

    def skip_layer(self, x: Float[torch.Tensor, "... d_model"], layer: int) -> Float[torch.Tensor, "... d_model"]:
        """What layer ``layer``'s skip writes from its MLP input ``x`` (zeros without a skip or features)."""
        if self.W_skip is None or not self.config.covers(layer):
            return x.new_zeros(*x.shape[:-1], self.config.d_model).to(self.b_dec)
        return x.to(self.W_skip) @ self.W_skip[layer]

    def compact_skip(self, x: Float[torch.Tensor, "... covered d_model"]) -> Float[torch.Tensor, "... covered d_model"]:
        """What the covered layers' skips write from their MLP inputs ``x`` (zeros without a skip)."""
        if self.W_skip is None:
            return torch.zeros_like(x, dtype=self.b_dec.dtype)
        return torch.einsum("...ld,lde->...le", x.to(self.W_skip), self.W_skip[self.index])

    def reconstruct_layer(
        self, x: Float[torch.Tensor, "... d_model"], acts: Sequence[Float[torch.Tensor, "... feature"]], layer: int
    ) -> Float[torch.Tensor, "... d_model"]:
        """Layer ``layer``'s whole replacement: its decoded features plus its skip of the MLP input ``x``."""
        return self.decode_layer(acts, layer) + self.skip_layer(x, layer)

    def forward(
        self, x: Float[torch.Tensor, "... layer d_model"]
    ) -> tuple[Float[torch.Tensor, "... layer d_model"], Float[torch.Tensor, "... layer feature"]]:
        """``(reconstruction, activations)`` of the MLP inputs ``x`` (model units), the skip included."""
        recon, acts = self.compact_forward(x[..., list(self.config.covered), :])
        return self._full(recon), self._full(acts)

    def decoder_norms(self, layers: Sequence[int] | None = None) -> Float[torch.Tensor, "layer feature"]:
        """Each feature's decoder norm over all its target layers, concatenated.

        Of every layer, or of ``layers`` (one row each). The loss asks for the covered layers only:
        the gradient of a norm of zeros is not a number.
        """
        chosen = range(self.config.n_layers) if layers is None else layers
        return torch.stack([self.W_dec[layer].pow(2).sum(dim=(0, 2)).sqrt() for layer in chosen])

    @torch.no_grad()
    def set_scales(
        self, inputs: Float[torch.Tensor, "row layer d_model"], targets: Float[torch.Tensor, "row layer d_model"]
    ) -> None:
        """Set the per-layer scalars that give inputs and targets a mean norm of ``sqrt(d_model)``.

        ``inputs`` and ``targets`` are samples of every layer, or of the covered ones only.
        """
        root = math.sqrt(self.config.d_model)
        layers = list(self.config.covered) if inputs.shape[-2] != self.config.n_layers else slice(None)
        self.in_scale[layers] = root / inputs.norm(dim=-1).mean(0).clamp_min(1e-8)
        self.out_scale[layers] = root / targets.norm(dim=-1).mean(0).clamp_min(1e-8)

    def compact_forward(
        self, x: Float[torch.Tensor, "... covered d_model"]
    ) -> tuple[Float[torch.Tensor, "... covered d_model"], Float[torch.Tensor, "... covered feature"]]:
        """``(reconstruction, activations)`` over the covered layers, from their MLP inputs ``x`` (skip included)."""
        acts = self.compact_encode(x)
        recon = self.compact_decode(acts)
        return (recon if self.W_skip is None else recon + self.compact_skip(x)), acts

    def save(self, folder: Path | str) -> None:
        """Write ``config.json`` and ``clt.safetensors`` in ``folder`` ([`ours`][workbench.clt.formats.ours])."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1), encoding="utf-8")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)

    @classmethod
    def load(cls, folder: Path | str, device: str = "cpu") -> CrossLayerTranscoder:
        """The transcoder that [`save`][workbench.clt.transcoder.CrossLayerTranscoder.save] wrote in ``folder``."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = CLTConfig(**json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        clt = cls(config)
        clt.load_state_dict(load_file(folder / WEIGHTS_FILE))  # W_skip is there exactly when config.skip
        clt.clear_uncovered()
        return clt.to(device)


def check_fits(clt: CrossLayerTranscoder, model: Model, name: str = "") -> None:
    """Refuse a transcoder made for another model (layers, width, or a recorded other name).

    Raises:
        WorkbenchError: The transcoder's layers or width are not the model's, or it records
            another model's name than ``name``; the message names the ``--model`` to pass.
    """
    from workbench.errors import WorkbenchError

    c = clt.config
    if c.n_layers != model.cfg.n_layers or c.d_model != model.cfg.d_model:
        raise WorkbenchError(
            f"The transcoder has {c.n_layers} layers of width {c.d_model}; {name or 'the model'} has "
            f"{model.cfg.n_layers} of {model.cfg.d_model}. Use a transcoder made for this model "
            "(or --model the one it was made for)."
        )
    if c.model and name and c.model != name:
        raise WorkbenchError(
            f"The transcoder was made for {c.model}, not {name}; pass --model {c.model}, or train one for this model."
        )


__all__ = [
    "CLTConfig",
    "CrossLayerTranscoder",
    "check_fits",
    "mlp_in_hook",
    "mlp_out_hook",
]
