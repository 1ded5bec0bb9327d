"""The logit lens: decode the residual stream after every layer into vocabulary tokens.

For each selected position and each layer (layer 0 = the embeddings, layer i = after block i-1),
the residual is read out through the final norm and the unembedding (``final_norm=False`` skips
the norm, the variant some papers use), and reduced at once, a chunk of rows at a time, to:

* the top-k tokens and their probabilities,
* the entropy of the distribution (nats),
* the probability of the model's own final top token at that position,
* the probability mass on groups of vocabulary tokens (e.g. all English tokens, all tokens of
  the input language), for the Wendler-style "latent language" curves.

Nothing of size ``[layers x positions x vocab]`` is kept: only these reductions.
The blocks run once per batch (``stop_at_layer``: the model's own unembedding is never computed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, Shaped

from workbench.data.batching import DEFAULT_BATCH_TOKENS, Batch, iter_batches, pad_id_of
from workbench.lens.readout import DEFAULT_CHUNK_ROWS, logits_of_rows
from workbench.models.model import Model, model_device
from workbench.runs.distributed import all_gather, shard

Positions = Literal["all", "last", "sample"]
"""Which positions of a document the lens reads: all, the last, or a sample (BOS never)."""


def lens_hook_names(model: Model) -> list[str]:
    """Hook names of the residual stream read by the lens: embeddings, then after each block."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]


@dataclass
class LensReadout:
    """Per layer and selected position: top-k tokens, entropy, final-token probability, group masses.

    Attributes:
        doc: The document of each selected position (row).
        position: Each row's token position within its document.
        topk_ids: The top-k tokens.
        topk_probs: Their probabilities.
        entropy: The entropy of the distribution (nats).
        final_top_prob: The probability of the model's own final top token.
        group_mass: The probability mass on each group of vocabulary tokens.
        groups: The groups' names.
    """

    doc: Int[np.ndarray, " row"]
    position: Int[np.ndarray, " row"]
    topk_ids: Int[np.ndarray, "layer row k"]
    topk_probs: Float[np.ndarray, "layer row k"]
    entropy: Float[np.ndarray, "layer row"]
    final_top_prob: Float[np.ndarray, "layer row"]
    group_mass: Float[np.ndarray, "layer row group"]
    groups: list[str]

    @property
    def n_layers(self) -> int:
        """The layers read (the embeddings and every block)."""
        return self.topk_ids.shape[0]

    @staticmethod
    def concat(parts: Sequence[LensReadout]) -> LensReadout:
        """The rows of ``parts``, one after the other (the groups of the first)."""
        first = parts[0]
        return LensReadout(
            doc=np.concatenate([p.doc for p in parts]),
            position=np.concatenate([p.position for p in parts]),
            topk_ids=np.concatenate([p.topk_ids for p in parts], axis=1),
            topk_probs=np.concatenate([p.topk_probs for p in parts], axis=1),
            entropy=np.concatenate([p.entropy for p in parts], axis=1),
            final_top_prob=np.concatenate([p.final_top_prob for p in parts], axis=1),
            group_mass=np.concatenate([p.group_mass for p in parts], axis=1),
            groups=first.groups,
        )

    def in_document_order(self) -> LensReadout:
        """The rows sorted by (document, position).

        The same readout however documents were batched or split over processes.
        """
        order = np.lexsort((self.position, self.doc))
        return LensReadout(
            doc=self.doc[order],
            position=self.position[order],
            topk_ids=self.topk_ids[:, order],
            topk_probs=self.topk_probs[:, order],
            entropy=self.entropy[:, order],
            final_top_prob=self.final_top_prob[:, order],
            group_mass=self.group_mass[:, order],
            groups=self.groups,
        )


def select_positions(
    lengths: Sequence[int], positions: Positions, per_doc: int, rng: np.random.Generator
) -> list[Int[np.ndarray, " position"]]:
    """Positions to read in each document. BOS (position 0) is never read: it carries no text.

    Args:
        lengths: Each document's length in tokens.
        positions: ``all``, ``last`` or ``sample`` (``per_doc`` of them at random; all when fewer).
        per_doc: Positions sampled per document.
        rng: The generator that samples.

    Returns:
        Each document's positions, sorted.

    Raises:
        ValueError: For another ``positions``.
    """
    out = []
    for n in lengths:
        candidates = np.arange(1, n)
        if positions == "last":
            out.append(candidates[-1:])
        elif positions == "all" or len(candidates) <= per_doc:
            out.append(candidates)
        elif positions == "sample":
            out.append(np.sort(rng.choice(candidates, size=per_doc, replace=False)))
        else:
            raise ValueError(f"positions must be 'all', 'last' or 'sample', not {positions!r}")
    return out


@torch.inference_mode()
def read_rows(
    model: Model,
    rows: Float[torch.Tensor, "row d_model"],
    k: int,
    final_norm: bool,
    final_top: Int[torch.Tensor, " row"] | None,
    group_matrix: Float[torch.Tensor, "d_vocab group"] | None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict[str, Shaped[torch.Tensor, "row ..."]]:
    """Reduce one layer's residual rows to top-k, entropy, p(final top) and group masses.

    Args:
        model: The model (its final norm and unembedding).
        rows: The residual rows.
        k: How many top tokens.
        final_norm: Read through the final norm.
        final_top: The model's final top token of each row; None means these rows *are* the
            model's final readout, so that their own top-1 is the final top token.
        group_matrix: 0/1 membership of every token in each group, or None for no groups.
        chunk_rows: Rows unembedded at once.

    Returns:
        ``ids`` and ``probs`` ``[row, k]``, ``entropy`` and ``final`` ``[row]``, and with a group
        matrix ``mass`` ``[row, group]``.
    """
    if final_norm and model.cfg.normalization_type is not None:
        rows = model.ln_final(rows)
    out: dict[str, list[torch.Tensor]] = {"ids": [], "probs": [], "entropy": [], "final": [], "mass": []}
    for start in range(0, rows.shape[0], chunk_rows):
        logp = torch.log_softmax(logits_of_rows(model, rows[start : start + chunk_rows]).float(), -1)
        probs = logp.exp()
        top = probs.topk(k, dim=-1)
        out["ids"].append(top.indices)
        out["probs"].append(top.values)
        out["entropy"].append(-(probs * logp).sum(-1))
        if final_top is None:
            out["final"].append(top.values[:, 0])
        else:
            out["final"].append(probs.gather(-1, final_top[start : start + chunk_rows, None])[:, 0])
        if group_matrix is not None:
            out["mass"].append(probs @ group_matrix)
    return {key: torch.cat(values) for key, values in out.items() if values}


@torch.inference_mode()
def logit_lens(
    model: Model,
    token_lists: Sequence[Int[torch.Tensor, " pos"]],
    k: int = 10,
    positions: Positions = "sample",
    per_doc: int = 8,
    final_norm: bool = True,
    groups: dict[str, Bool[np.ndarray, " d_vocab"]] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> LensReadout:
    """Run the lens over documents; see the module docstring.

    The model's final top token is the argmax of the last layer read through the final norm,
    i.e. the model's own prediction.

    Args:
        model: The model.
        token_lists: The documents' token ids, BOS first.
        k: How many top tokens per layer and position.
        positions: Which positions to read ([`select_positions`][workbench.lens.logit_lens.select_positions]).
        per_doc: Positions sampled per document.
        final_norm: Read every layer through the final norm.
        groups: Per name, a mask over the vocabulary; the readout holds each layer's probability
            mass on each group.
        batch_tokens: Tokens per batch (padding included).
        seed: Seeds the sampled positions.
        progress: Called with each batch's token count.

    Returns:
        The readout, rows in document order (every process's, under ``torchrun``).
    """
    groups = groups or {}
    group_names = list(groups)
    group_matrix = (
        torch.tensor(np.stack([groups[g] for g in group_names], 1), dtype=torch.float32, device=model.W_U.device)
        if groups
        else None
    )
    chosen = select_positions([len(t) for t in token_lists], positions, per_doc, np.random.default_rng(seed))
    device = model_device(model)
    parts = []
    for batch in iter_batches(token_lists, pad_id_of(model), batch_tokens, device, shard(len(token_lists))):
        parts.append(_read_batch(model, batch, chosen, k, final_norm, group_matrix, group_names))
        if progress is not None:
            progress(batch.n_tokens)
    every = [part for parts_of_rank in all_gather(parts) for part in parts_of_rank]  # under torchrun: every rank's
    return LensReadout.concat(every).in_document_order()


def _read_batch(
    model: Model,
    batch: Batch,
    chosen: list[np.ndarray],
    k: int,
    final_norm: bool,
    group_matrix: torch.Tensor | None,
    group_names: list[str],
) -> LensReadout:
    """The lens over one batch's chosen positions."""
    names = lens_hook_names(model)
    rows_doc = np.concatenate([np.full(len(chosen[i]), i) for i in batch.index])
    rows_pos = np.concatenate([chosen[i] for i in batch.index])
    batch_row = torch.as_tensor(np.concatenate([np.full(len(chosen[i]), r) for r, i in enumerate(batch.index)]))
    pos = torch.as_tensor(rows_pos)
    _, cache = model.run_with_cache(
        batch.tokens,
        names_filter=lambda name: name in names,
        stop_at_layer=model.cfg.n_layers,
        device=model.W_U.device,  # every layer's rows where the unembedding is (layers may be split)
    )
    resid = [cache[name][batch_row, pos] for name in names]
    del cache
    # The last layer read through the final norm is the model's own output: read it first,
    # and its top-1 is the final top token for every other layer.
    last = read_rows(model, resid[-1], k, True, None, group_matrix)
    final_top = last["ids"][:, 0]
    if not final_norm:
        last = read_rows(model, resid[-1], k, False, final_top, group_matrix)
    per_layer = [read_rows(model, r, k, final_norm, final_top, group_matrix) for r in resid[:-1]] + [last]
    return LensReadout(
        doc=rows_doc,
        position=rows_pos,
        topk_ids=np.stack([p["ids"].cpu().numpy() for p in per_layer]).astype(np.int32),
        topk_probs=np.stack([p["probs"].cpu().numpy() for p in per_layer]).astype(np.float32),
        entropy=np.stack([p["entropy"].cpu().numpy() for p in per_layer]),
        final_top_prob=np.stack([p["final"].cpu().numpy() for p in per_layer]),
        group_mass=(
            np.stack([p["mass"].cpu().numpy() for p in per_layer])
            if group_names
            else np.zeros((len(names), len(rows_pos), 0), dtype=np.float32)
        ),
        groups=group_names,
    )
