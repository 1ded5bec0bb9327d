"""Can a linear map read a token's language from the residual stream, and from which layer?

The multilingual CLT paper (arXiv 2511.10840) finds language-identity features and asks whether
the language is linearly decodable from the residual stream early on. Here a multinomial logistic
probe is trained per residual point on tokens of parallel verses and scored on held-out verses:

* residual point ``l`` is the input of block ``l`` (``blocks.{l}.hook_resid_pre``; point 0 is
  the embedding), point ``n_layers`` the last block's output; BOS and padding are left out;
* every language contributes the same number of training tokens (at most ``tokens`` each);
* the probe is fit on standardised rows by L-BFGS with an L2 penalty, deterministic.

Two baselines say what the residual adds to the token itself: the majority language, and the
**token-identity** lookup (each token id's most frequent training language; unseen ids get the
majority). Accuracy is also reported on **shared tokens**, those whose id occurs in the training
tokens of two or more languages: there the token alone does not tell the language, the context
must.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from workbench.data.batching import iter_batches, pad_id_of
from workbench.models.model import Model, model_device


def resid_hook(point: int, n_layers: int) -> str:
    """The hook of residual point ``point`` (0..n_layers): a block's input, or the last block's output."""
    return f"blocks.{point}.hook_resid_pre" if point < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"


@dataclass
class ProbeRows:
    """Residual rows of some tokens at every point, with each token's language and id.

    Attributes:
        X: The rows at every residual point (float32).
        language: Each row's language, as an index into the language list.
        token: Each row's token id.
    """

    X: Float[torch.Tensor, "point row d_model"]
    language: Int[torch.Tensor, " row"]
    token: Int[torch.Tensor, " row"]


@torch.no_grad()
def residual_rows(
    model: Model,
    documents: Mapping[str, Sequence[Int[torch.Tensor, " pos"]]],
    max_tokens: int,
    batch_tokens: int = 2048,
) -> ProbeRows:
    """Every residual point's rows for at most ``max_tokens`` tokens per language.

    Documents are read in order, BOS and padding left out; reading stops for a language once it
    has its tokens.

    Args:
        model: The model.
        documents: Per language, its documents' token ids (BOS first).
        max_tokens: The most tokens per language.
        batch_tokens: Tokens per batch (padding included).

    Returns:
        The rows, languages indexed in ``documents``' order.
    """
    L = model.cfg.n_layers
    device = model_device(model)
    names = {resid_hook(p, L) for p in range(L + 1)}
    xs, langs, ids = [], [], []
    for index, docs in enumerate(documents.values()):
        taken = 0
        for batch in iter_batches(list(docs), pad_id_of(model), batch_tokens, device):
            keep = batch.mask.bool()
            keep[:, 0] = False
            _, cache = model.run_with_cache(
                batch.tokens, names_filter=lambda name: name in names, stop_at_layer=L, device=device
            )
            rows = torch.stack([cache[resid_hook(p, L)][keep] for p in range(L + 1)])[:, : max_tokens - taken]
            xs.append(rows.float().cpu())
            ids.append(batch.tokens[keep][: rows.shape[1]].cpu())
            langs.append(torch.full((rows.shape[1],), index))
            taken += rows.shape[1]
            if taken >= max_tokens:
                break
    return ProbeRows(torch.cat(xs, 1), torch.cat(langs), torch.cat(ids))


@dataclass
class LinearProbe:
    """A multinomial logistic probe on standardised rows.

    Attributes:
        mean: The training rows' mean.
        scale: Their standard deviation (at least 1e-6).
        W: The weights.
        b: The biases.
    """

    mean: Float[torch.Tensor, " d_model"]
    scale: Float[torch.Tensor, " d_model"]
    W: Float[torch.Tensor, "d_model class"]
    b: Float[torch.Tensor, " class"]

    def logits(self, X: Float[torch.Tensor, "row d_model"]) -> Float[torch.Tensor, "row class"]:
        """The probe's logits for rows."""
        return ((X - self.mean) / self.scale) @ self.W + self.b

    def predict(self, X: Float[torch.Tensor, "row d_model"]) -> Int[torch.Tensor, " row"]:
        """The most likely class of each row."""
        return self.logits(X).argmax(-1)


def fit_probe(
    X: Float[torch.Tensor, "row d_model"],
    y: Int[torch.Tensor, " row"],
    classes: int,
    l2: float = 1e-3,
    steps: int = 100,
) -> LinearProbe:
    """Minimise mean cross-entropy + ``l2 * ||W||^2`` over standardised ``X`` by L-BFGS.

    Args:
        X: The training rows.
        y: Their classes.
        classes: How many classes.
        l2: The weight penalty.
        steps: L-BFGS iterations at most.

    Returns:
        The probe (deterministic for the same rows).
    """
    X = X.double()
    mean, scale = X.mean(0), X.std(0).clamp_min(1e-6)
    Z = (X - mean) / scale
    W = torch.zeros(X.shape[1], classes, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=X.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([W, b], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(Z @ W + b, y) + l2 * (W**2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimiser.step(loss)
    return LinearProbe(mean.float(), scale.float(), W.detach().float(), b.detach().float())


def token_baseline(
    train_tokens: Int[torch.Tensor, " row"], train_language: Int[torch.Tensor, " row"], classes: int
) -> dict[int, int]:
    """Each training token id's most frequent language (ties: the lower index)."""
    counts: dict[int, Counter] = {}
    for token, lang in zip(train_tokens.tolist(), train_language.tolist()):
        counts.setdefault(token, Counter())[lang] += 1
    return {token: min(c, key=lambda lang: (-c[lang], lang)) for token, c in counts.items()}


def shared_tokens(train_tokens: Int[torch.Tensor, " row"], train_language: Int[torch.Tensor, " row"]) -> set[int]:
    """Token ids that occur in the training tokens of two or more languages."""
    seen: dict[int, set[int]] = {}
    for token, lang in zip(train_tokens.tolist(), train_language.tolist()):
        seen.setdefault(token, set()).add(lang)
    return {token for token, langs in seen.items() if len(langs) > 1}


@dataclass
class PointScore:
    """Held-out accuracy of one residual point's probe.

    Attributes:
        point: The residual point.
        accuracy: On every held-out token.
        shared: On shared tokens (NaN if none).
        per_language: On each language's tokens, in the language order.
    """

    point: int
    accuracy: float
    shared: float
    per_language: list[float]


def _accuracy(hit: Bool[np.ndarray, " row"], mask: Bool[np.ndarray, " row"] | None = None) -> float:
    kept = hit if mask is None else hit[mask]
    return float(kept.mean()) if kept.size else float("nan")


def probe_points(
    train: ProbeRows,
    test: ProbeRows,
    classes: int,
    l2: float = 1e-3,
    steps: int = 100,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[PointScore], dict[str, float]]:
    """Fit a probe per residual point on ``train``, score it on ``test``; and the baselines.

    Args:
        train: The training rows.
        test: The held-out rows.
        classes: How many languages.
        l2: The probes' weight penalty.
        steps: L-BFGS iterations at most.
        progress: Called with each point once its probe is scored.

    Returns:
        The scores of every point, and the baselines: ``majority`` and ``token`` (on all held-out
        tokens), ``token_shared`` (on shared ones), ``shared_share`` (the share of held-out tokens
        that are shared).
    """
    shared = shared_tokens(train.token, train.language)
    is_shared = np.array([t in shared for t in test.token.tolist()], dtype=bool)
    y = test.language.numpy()
    lookup = token_baseline(train.token, train.language, classes)
    majority = int(np.bincount(train.language.numpy(), minlength=classes).argmax())
    by_token = np.array([lookup.get(t, majority) for t in test.token.tolist()])
    baselines = {
        "majority": _accuracy(y == majority),
        "token": _accuracy(by_token == y),
        "token_shared": _accuracy(by_token == y, is_shared),
        "shared_share": float(is_shared.mean()),
    }
    scores = []
    for point in range(train.X.shape[0]):
        probe = fit_probe(train.X[point], train.language, classes, l2, steps)
        hit = probe.predict(test.X[point]).numpy() == y
        per_language = [_accuracy(hit, y == c) for c in range(classes)]
        scores.append(PointScore(point, _accuracy(hit), _accuracy(hit, is_shared), per_language))
        if progress is not None:
            progress(point)
    return scores, baselines


__all__ = [
    "LinearProbe",
    "PointScore",
    "ProbeRows",
    "fit_probe",
    "probe_points",
    "resid_hook",
    "residual_rows",
    "shared_tokens",
    "token_baseline",
]
