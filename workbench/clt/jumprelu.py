"""JumpReLU (Rajamanoharan et al. 2024): ``z * (z > theta)`` with a learned threshold per feature.

Its gradient passes straight through to ``z`` where ``z > theta``; the threshold gets the
rectangle-kernel pseudo-derivative ``-(theta / eps) * K((z - theta) / eps)``, which is the exact
derivative of [`threshold_surrogate`][workbench.clt.jumprelu.threshold_surrogate] (the tests hold
it to finite differences of that).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from jaxtyping import Float


class JumpReLU(torch.autograd.Function):
    """``z * (z > theta)``: straight-through to ``z``, rectangle kernel for ``theta``."""

    @staticmethod
    def forward(
        ctx: Any, z: Float[torch.Tensor, "*shape"], theta: Float[torch.Tensor, "*#shape"], eps: float
    ) -> Float[torch.Tensor, "*shape"]:
        """``z * (z > theta)``, keeping ``z`` and ``theta`` for the backward pass."""
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(
        ctx: Any, grad: Float[torch.Tensor, "*shape"]
    ) -> tuple[Float[torch.Tensor, "*shape"], Float[torch.Tensor, "*#shape"], None]:
        """The gradients of ``z`` (straight through where active) and ``theta`` (the kernel), none of ``eps``."""
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


def threshold_surrogate(
    z: Float[torch.Tensor, "*shape"], theta: Float[torch.Tensor, "*#shape"], eps: float
) -> Float[torch.Tensor, "*shape"]:
    """The smooth stand-in for ``JumpReLU`` as a function of ``theta``: its derivative is the pseudo-derivative.

    ``z`` below the window, 0 above it, ``((z + eps/2)^2 - theta^2) / (2 eps)`` inside
    (continuous at both ends).
    """
    inside = ((z + eps / 2) ** 2 - theta**2) / (2 * eps)
    return torch.where(theta <= z - eps / 2, z, torch.where(theta >= z + eps / 2, torch.zeros_like(z), inside))


def jump_relu(
    z: Float[torch.Tensor, "*shape"], theta: Float[torch.Tensor, "*#shape"], eps: float
) -> Float[torch.Tensor, "*shape"]:
    """[`JumpReLU`][workbench.clt.jumprelu.JumpReLU] of ``z`` at thresholds ``theta`` (kernel width ``eps``).

    ``JumpReLU.apply`` with its type: ``Function.apply`` is untyped.
    """
    return cast(torch.Tensor, JumpReLU.apply(z, theta, eps))


__all__ = ["JumpReLU", "jump_relu", "threshold_surrogate"]
