"""A cross-layer transcoder (CLT): sparse features that replace a model's MLPs.

Per layer ``l``, an encoder reads the MLP's input (``blocks.{l}.ln2.hook_normalized``, the
normalised residual) into ``n_features`` JumpReLU features; feature ``f`` of layer ``l`` has a
decoder to the MLP output (``blocks.{l'}.hook_mlp_out``) of its own and every later layer
``l' >= l``, so layer ``l'``'s reconstruction is the sum over ``l <= l'`` of
``acts[l] @ W_dec[l][l' - l]`` plus a bias (arXiv 2511.10840's setup; Ameisen et al. 2025, "Circuit
Tracing"). With ``per_layer`` a feature writes only to its own layer: a plain per-layer transcoder.

Inputs and targets are scaled per layer by a scalar (``sqrt(d_model)`` over their mean norm,
estimated from data with :meth:`CrossLayerTranscoder.set_scales`), so one sparsity coefficient
suits every layer; :meth:`forward` takes and returns the model's own units.

JumpReLU (Rajamanoharan et al. 2024): ``z * (z > theta)`` with a learned threshold per feature.
Its gradient passes straight through to ``z`` where ``z > theta``; the threshold gets the
rectangle-kernel pseudo-derivative ``-(theta / eps) * K((z - theta) / eps)``, which is the exact
derivative of :func:`threshold_surrogate` (the tests hold it to finite differences of that).

The loss (:func:`clt_loss`): squared error summed over ``d_model`` and layers, mean over tokens;
plus ``lambda * sum_f tanh(c * a_f * ||W_dec,f||)`` with the norm over all of ``f``'s decoders
(concatenated over target layers); plus a small penalty ``sum relu(theta - z) * ||W_dec,f||``
that pulls dead features' pre-activations up to their threshold.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

THRESHOLD_INIT = 0.03
BANDWIDTH = 1.0
SPARSITY_C = 4.0
DEAD_PENALTY = 1e-4


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

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_features) < 1:
            raise ValueError(f"A CLT needs positive layers, d_model and features; got {self}.")

    def targets(self, layer: int) -> int:
        """How many layers a feature of ``layer`` writes to."""
        return 1 if self.per_layer else self.n_layers - layer


class JumpReLU(torch.autograd.Function):
    """``z * (z > theta)``: straight-through to ``z``, rectangle kernel for ``theta``."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = grad * (z > theta)
        window = ((z - theta).abs() < eps / 2).to(grad.dtype)
        grad_theta = -(theta / eps) * window * grad
        return grad_z, _reduce_to(grad_theta, theta.shape), None


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape`` (the threshold's)."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    return grad


def threshold_surrogate(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    """The smooth stand-in for ``JumpReLU`` as a function of ``theta`` whose derivative is the
    pseudo-derivative: ``z`` below the window, 0 above it, ``((z + eps/2)^2 - theta^2) / (2 eps)``
    inside (continuous at both ends)."""
    inside = ((z + eps / 2) ** 2 - theta**2) / (2 * eps)
    return torch.where(theta <= z - eps / 2, z, torch.where(theta >= z + eps / 2, torch.zeros_like(z), inside))


class CrossLayerTranscoder(nn.Module):
    """Encoders per layer, decoders from each layer to itself and every later layer."""

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

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., L, d]`` (model units) -> ``[..., L, F]`` encoder outputs before JumpReLU."""
        scaled = x * self.in_scale[:, None]
        return torch.einsum("...ld,ldf->...lf", scaled, self.W_enc) + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., L, F]``."""
        return JumpReLU.apply(self.pre_activations(x), self.threshold, self.config.bandwidth)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstructed MLP outputs ``[..., L, d]`` (model units) from ``acts [..., L, F]``."""
        L = self.config.n_layers
        out = self.b_dec
        for source in range(L):
            written = torch.einsum("...f,kfd->...kd", acts[..., source, :], self.W_dec[source])  # to layers source..
            out = out + nn.functional.pad(written, (0, 0, source, L - source - written.shape[-2]))
        return out / self.out_scale[:, None]

    def layer_pre_activations(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s encoder outputs ``[..., F]`` before JumpReLU, from its MLP input ``x [..., d]``."""
        return (x * self.in_scale[layer]) @ self.W_enc[layer] + self.b_enc[layer]

    def encode_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s feature activations ``[..., F]`` from its MLP input ``x [..., d]``."""
        return JumpReLU.apply(self.layer_pre_activations(x, layer), self.threshold[layer], self.config.bandwidth)

    def decode_layer(self, acts: list[torch.Tensor], layer: int) -> torch.Tensor:
        """Layer ``layer``'s reconstructed MLP output from the activations of layers ``0..layer``
        (``acts[source] [..., F]``): what the replacement model writes there."""
        out = self.b_dec[layer]
        for source in range(layer + 1):
            k = layer - source
            if k < self.config.targets(source):
                out = out + acts[source] @ self.W_dec[source][k]
        return out / self.out_scale[layer]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, activations)`` of ``x [..., L, d]``."""
        acts = self.encode(x)
        return self.decode(acts), acts

    def decoder_norms(self) -> torch.Tensor:
        """``[L, F]``: each feature's decoder norm over all its target layers, concatenated."""
        return torch.stack([w.pow(2).sum(dim=(0, 2)).sqrt() for w in self.W_dec])

    @torch.no_grad()
    def set_scales(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Per-layer scalars that give inputs and targets a mean norm of ``sqrt(d_model)``
        (``inputs``, ``targets``: ``[tokens, L, d]`` samples)."""
        root = math.sqrt(self.config.d_model)
        self.in_scale.copy_(root / inputs.norm(dim=-1).mean(0).clamp_min(1e-8))
        self.out_scale.copy_(root / targets.norm(dim=-1).mean(0).clamp_min(1e-8))

    def save(self, folder: Path) -> None:
        """``config.json`` and ``clt.safetensors`` in ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=1), encoding="utf-8")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / "clt.safetensors")

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> CrossLayerTranscoder:
        from safetensors.torch import load_file

        folder = Path(folder)
        config = CLTConfig(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
        clt = cls(config)
        clt.load_state_dict(load_file(folder / "clt.safetensors"))
        return clt.to(device)


def check_fits(clt: CrossLayerTranscoder, model, name: str = "") -> None:
    """Refuse a transcoder made for another model (layers, width, or a recorded other name)."""
    from workbench.errors import WorkbenchError

    c = clt.config
    if c.n_layers != model.cfg.n_layers or c.d_model != model.cfg.d_model:
        raise WorkbenchError(f"The transcoder has {c.n_layers} layers of width {c.d_model}; {name or 'the model'} has "
                             f"{model.cfg.n_layers} of {model.cfg.d_model}. Use a transcoder made for this model "
                             "(or --model the one it was made for).")  # fmt: skip
    if c.model and name and c.model != name:
        raise WorkbenchError(f"The transcoder was made for {c.model}, not {name}; pass --model {c.model}, "
                             "or train one for this model.")  # fmt: skip


@dataclass
class LossParts:
    """The loss and its terms (floats for logging; ``total`` keeps its graph)."""

    total: torch.Tensor
    mse: float
    sparsity: float
    dead: float
    l0: float  # mean active features per token, all layers together


def clt_loss(clt: CrossLayerTranscoder, x: torch.Tensor, target: torch.Tensor, sparsity: float,
             c: float = SPARSITY_C, dead: float = DEAD_PENALTY) -> LossParts:  # fmt: skip
    """The training loss on ``x``, ``target`` (``[tokens, L, d]``, model units). The squared
    error is taken in the scaled units, so every layer weighs the same."""
    pre = clt.pre_activations(x)
    acts = JumpReLU.apply(pre, clt.threshold, clt.config.bandwidth)
    recon = clt.decode(acts)
    error = (recon - target) * clt.out_scale[:, None]
    mse = error.pow(2).sum(dim=(-1, -2)).mean()
    norms = clt.decoder_norms()
    sparse = torch.tanh(c * acts * norms).sum(dim=(-1, -2)).mean()
    dead_term = (torch.relu(clt.threshold - pre) * norms).sum(dim=(-1, -2)).mean()
    total = mse + sparsity * sparse + dead * dead_term
    l0 = float((acts > 0).sum(dim=(-1, -2)).float().mean())
    return LossParts(total, mse.item(), sparse.item(), dead_term.item(), l0)


__all__ = ["CLTConfig", "CrossLayerTranscoder", "JumpReLU", "LossParts", "check_fits", "clt_loss", "mlp_in_hook", "mlp_out_hook",
           "threshold_surrogate"]  # fmt: skip
