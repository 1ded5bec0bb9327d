"""The affine skip of a skip transcoder, fitted in closed form from second moments in one pass.

Per covered layer, the least-squares affine map from the MLP input ``x`` to its output ``y``:
``y ~ x @ W + b``, solved from the moments ``sum [x, 1]^T [x, 1]`` and ``sum [x, 1]^T y``
accumulated over the training rows (float64; one ``[d + 1, d + 1]`` and one ``[d + 1, d]`` matrix
per layer, whatever the number of rows). A tiny ridge (``RIDGE`` times the mean diagonal) keeps the
solve defined when some direction of ``x`` never varies (a tiny model, few rows).

[`fit_skip`][workbench.clt.skip.fit_skip] writes the map into a transcoder: ``W`` as its
``W_skip``, ``b`` as its decoder bias. The sparse features are then trained on what the map
leaves (``y - x @ W - b``), which is what a linear map cannot model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Float

from workbench.clt.transcoder import CrossLayerTranscoder

RIDGE = 1e-6
"""The ridge added to the input moments' diagonal, relative to its mean (scale-free)."""


class AffineMoments:
    """Running second moments of MLP inputs and outputs, per layer.

    Args:
        n_layers: The layers (the second-to-last axis of the rows added).
        d_in: The input width.
        d_out: The output width.
    """

    def __init__(self, n_layers: int, d_in: int, d_out: int):
        self.xx = torch.zeros(n_layers, d_in + 1, d_in + 1, dtype=torch.float64)
        self.xy = torch.zeros(n_layers, d_in + 1, d_out, dtype=torch.float64)
        self.rows = 0

    def add(self, x: Float[torch.Tensor, "row layer d_in"], y: Float[torch.Tensor, "row layer d_out"]) -> None:
        """Add rows (products in float32 per call, summed in float64)."""
        x, y = x.float(), y.float()
        ones = x.new_ones(*x.shape[:-1], 1)
        xa = torch.cat([x, ones], -1)
        self.xx += torch.einsum("rli,rlj->lij", xa, xa).double().cpu()
        self.xy += torch.einsum("rli,rlj->lij", xa, y).double().cpu()
        self.rows += len(x)

    def solve(
        self, ridge: float = RIDGE
    ) -> tuple[Float[torch.Tensor, "layer d_in d_out"], Float[torch.Tensor, "layer d_out"]]:
        """The least-squares ``(W, b)`` per layer (float32)."""
        if self.rows == 0:
            raise ValueError("No rows were added: the skip cannot be fitted on nothing.")
        d = self.xx.shape[-1] - 1
        diag = self.xx.diagonal(dim1=-2, dim2=-1)[:, :d]
        eye = torch.eye(d + 1, dtype=torch.float64)
        eye[d, d] = 0  # the bias is not shrunk
        shrink = ridge * diag.mean(-1).clamp_min(1e-12)[:, None, None] * eye
        solution = torch.linalg.solve(self.xx + shrink, self.xy)
        return solution[:, :d].float(), solution[:, d].float()


def moments_of(
    batches: Iterable[tuple[Float[torch.Tensor, "row layer d_model"], Float[torch.Tensor, "row layer d_model"]]],
) -> AffineMoments:
    """The moments of every ``(inputs, outputs)`` batch (one pass)."""
    moments: AffineMoments | None = None
    for x, y in batches:
        moments = moments or AffineMoments(x.shape[-2], x.shape[-1], y.shape[-1])
        moments.add(x, y)
    if moments is None:
        raise ValueError("No rows were given: the skip cannot be fitted on nothing.")
    return moments


@torch.no_grad()
def fit_skip(clt: CrossLayerTranscoder, moments: AffineMoments, ridge: float = RIDGE) -> None:
    """Set ``clt``'s skip and decoder bias to the least-squares affine map of ``moments``.

    ``moments`` hold the covered layers' rows (in order). The decoder bias is written in the
    transcoder's scaled units, so call it after
    [`set_scales`][workbench.clt.transcoder.CrossLayerTranscoder.set_scales].

    Raises:
        ValueError: A transcoder without a skip, or moments of another number of layers.
    """
    if clt.W_skip is None:
        raise ValueError("The transcoder has no skip (CLTConfig.skip is False); make it with skip=True.")
    covered = list(clt.config.covered)
    if moments.xx.shape[0] != len(covered):
        raise ValueError(f"The moments hold {moments.xx.shape[0]} layers; the transcoder covers {len(covered)}.")
    W, b = moments.solve(ridge)
    clt.W_skip[covered] = W.to(clt.W_skip)
    clt.b_dec[covered] = b.to(clt.b_dec) * clt.out_scale[covered, None]


__all__ = ["RIDGE", "AffineMoments", "fit_skip", "moments_of"]
