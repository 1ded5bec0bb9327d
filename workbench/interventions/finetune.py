"""Neuron fine-tuning (docs/methods.md §8; MWork Figure 4 and Table 6): train only a neuron set.

Only the parameter entries of the chosen neurons change
([`parameter_entries`][workbench.neurons.sets.parameter_entries]: an FFN unit's W_in/W_gate column
and W_out row, a Q/K/V dimension's column, an O row). They are trained as small leaf tensors
spliced into the frozen weights by a *parametrization* (``torch.nn.utils.parametrize``): the weight
the model reads is ``W`` with those entries replaced.
The gradient reaching them is exactly the masked gradient of ``W``, and every other entry stays
bit-for-bit what it was, by construction. Parametrizations are removed on exit, like hooks, so
the model object is left as it was found. The trained entries are float32 (or wider) whatever the
model's dtype, cast to it as the weight is read, so Adam's small steps are not rounded away in half
precision; a trained [`NeuronDelta`][workbench.interventions.finetune.NeuronDelta] is applied the same way
(``with delta.applied(model): ...``), or exported as a full state dict.

Biases: an FFN unit's ``b_in`` entry and a Q/K/V dimension's bias belong to the neuron when the
model has biases; for models without them (Gemma, Llama, Mistral: TransformerLens holds zeros)
they are left out, so the fine-tuned model stays one the original architecture can express.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import nn
from torch.nn.utils import parametrize

from workbench.data.batching import Batch, iter_batches, pad_id_of
from workbench.interventions.options import TrainOptions
from workbench.lens.readout import mean_next_token_loss
from workbench.models.model import Model
from workbench.neurons.sets import NeuronDims, NeuronSet, structure_size, sublayer_entries
from workbench.runs.results import workbench_version

Entries = dict[str, tuple[Int[torch.Tensor, " entry"], Float[torch.Tensor, " entry"]]]
"""Per parameter path (a ``state_dict`` key), the flat indices of some of its entries and their values."""


class NeuronPatch(nn.Module):
    """Parametrization: the weight with the entries at ``index`` (flat) replaced by ``values``."""

    index: Int[torch.Tensor, " entry"]

    def __init__(self, index: Int[torch.Tensor, " entry"], values: Float[torch.Tensor, " entry"], trainable: bool):
        super().__init__()
        self.register_buffer("index", index)
        self.values = nn.Parameter(values, requires_grad=trainable)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` with the patched entries replaced (in its dtype; the gradient reaches ``values``)."""
        return weight.reshape(-1).index_copy(0, self.index, self.values.to(weight.dtype)).view(weight.shape)


def _attribute_of(module: nn.Module, param: torch.Tensor) -> str:
    for name, candidate in module.named_parameters(recurse=False):
        if candidate is param:
            return name
    raise ValueError(f"{type(module).__name__} holds no such parameter (is it already parametrized?).")


def neuron_indices(
    model: Model, neurons: NeuronSet, biases: bool | None = None
) -> dict[str, Int[torch.Tensor, " entry"]]:
    """Flat indices of the neurons' parameter entries, per parameter path.

    A path is a ``state_dict`` key (``"blocks.3.mlp.W_in"``). ``biases=None``: include bias
    entries only where the model's bias is not identically zero.
    """
    masks: dict[str, torch.Tensor | None] = {}  # boolean, per parameter; None: a bias left out
    for structure, rows in neurons.neurons.items():
        for layer, index in rows.tolist():
            module_name = "mlp" if structure == "ffn" else "attn"
            module = getattr(model.blocks[layer], module_name)
            for name, param, where in sublayer_entries(module, model.cfg, structure, index):
                path = f"blocks.{layer}.{module_name}.{_attribute_of(module, param)}"
                if path not in masks:
                    wanted = not name.startswith("b_") or _wanted_bias(param, biases)
                    masks[path] = torch.zeros(param.shape, dtype=torch.bool) if wanted else None
                mask = masks[path]
                if mask is not None:
                    mask[where] = True
    return {path: mask.reshape(-1).nonzero().squeeze(1) for path, mask in masks.items() if mask is not None}


def _wanted_bias(param: torch.Tensor, biases: bool | None) -> bool:
    return bool(param.detach().abs().sum() > 0) if biases is None else biases


def _split_path(path: str) -> tuple[str, str]:
    module, _, attribute = path.rpartition(".")
    return module, attribute


@contextmanager
def patched(model: Model, values: Entries, trainable: bool = False) -> Iterator[dict[str, NeuronPatch]]:
    """Splice ``{path: (flat index, values)}`` into the model's weights for the duration of the block.

    With ``trainable`` every other parameter is frozen and the patches' values train.
    Parametrizations and ``requires_grad`` flags are restored on exit, errors included.
    """
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    patches: dict[str, NeuronPatch] = {}
    try:
        if trainable:
            for p in model.parameters():
                p.requires_grad_(False)
        for path, (index, vals) in values.items():
            module_name, attribute = _split_path(path)
            module = model.get_submodule(module_name)
            weight = getattr(module, attribute)
            master = vals.detach().clone().to(weight.device, torch.promote_types(vals.dtype, torch.float32))
            patch = NeuronPatch(index.to(weight.device), master, trainable)
            parametrize.register_parametrization(module, attribute, patch)
            patches[path] = patch
        yield patches
    finally:
        for path in patches:
            module_name, attribute = _split_path(path)
            parametrize.remove_parametrizations(model.get_submodule(module_name), attribute, leave_parametrized=False)
        for name, p in model.named_parameters():
            if name in flags:
                p.requires_grad_(flags[name])


@dataclass
class NeuronDelta:
    """The trained values of a neuron set's parameter entries: what fine-tuning changed.

    ``values``: per parameter path, ``(flat index, new values)``. Applying it replaces those
    entries; nothing else differs from the base model. ``meta`` records what made it (model,
    package version, training options and record, parameter shapes; the experiment adds the
    language, kind and document count).
    """

    values: Entries
    neurons: NeuronSet
    meta: dict = field(default_factory=dict)

    @property
    def n_parameters(self) -> int:
        """How many parameter entries the delta sets."""
        return sum(int(index.numel()) for index, _ in self.values.values())

    @contextmanager
    def applied(self, model: Model) -> Iterator[Model]:
        """The model with this delta in its weights, for the block (hooks and all analyses work)."""
        with patched(model, self.values):
            yield model

    def state_dict(self, model: Model) -> dict[str, torch.Tensor]:
        """The base model's full ``state_dict`` with the delta applied (copies; the model is untouched)."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for path, (index, vals) in self.values.items():
            state[path].view(-1)[index.to(state[path].device)] = vals.to(state[path].dtype)
        return state

    def export(self, model: Model, path: Path) -> Path:
        """Write the full fine-tuned model as a TransformerLens state dict (safetensors).

        It loads with ``HookedTransformer(model.cfg).load_state_dict``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous().cpu() for k, v in self.state_dict(model).items()}
        save_file(state, str(path), metadata={"meta": json.dumps(self.meta)})
        return path

    def save(self, path: Path) -> Path:
        """Save as safetensors: ``PATH::index`` and ``PATH::values`` per parameter.

        The neuron set and ``meta`` go in the file's metadata, as JSON.
        """
        from safetensors.torch import save

        from workbench.runs.results import atomic_write_bytes

        path = Path(path)
        tensors = {}
        for name, (index, vals) in self.values.items():
            tensors[f"{name}::index"] = index.detach().cpu().contiguous()
            tensors[f"{name}::values"] = vals.detach().cpu().contiguous()
        meta = {"neurons": json.dumps(self.neurons.to_dict()), "meta": json.dumps(self.meta)}
        atomic_write_bytes(path, save(tensors, metadata=meta))
        return path

    @classmethod
    def load(cls, path: Path) -> NeuronDelta:
        """A delta saved by [`save`][workbench.interventions.finetune.NeuronDelta.save]."""
        from safetensors import safe_open

        values: dict[str, list] = {}
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata()
            for key in fh.keys():
                name, _, part = key.rpartition("::")
                values.setdefault(name, [None, None])[0 if part == "index" else 1] = fh.get_tensor(key)
        return cls(
            {name: (pair[0], pair[1]) for name, pair in values.items()},
            NeuronSet.from_dict(json.loads(metadata["neurons"])),
            json.loads(metadata["meta"]),
        )

    def check_fits(self, model: Model) -> None:
        """Refuse a delta made for another architecture (a parameter it lacks or of another shape)."""
        state = model.state_dict()
        shapes = self.meta.get("shapes", {})
        for name, (index, _) in self.values.items():
            fits = name in state and (int(index.max()) < state[name].numel() if index.numel() else True)
            if not fits or (name in shapes and list(state[name].shape) != list(shapes[name])):
                raise ValueError(
                    f"This delta does not fit the model: parameter {name} is missing or has another shape."
                )


# ----------------------------------------------------------------------------- training


@dataclass
class TrainRecord:
    """How a training run went: the loss of every step (before its update), tokens, time."""

    steps: int
    tokens: int
    seconds: float
    parameters: int
    losses: list[float]

    def summary(self) -> dict:
        """Without the per-step losses; first and last are the means of the first and last tenth."""
        tenth = max(1, len(self.losses) // 10)
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "parameters": self.parameters,
            "first_loss": float(np.mean(self.losses[:tenth])) if self.losses else math.nan,
            "last_loss": float(np.mean(self.losses[-tenth:])) if self.losses else math.nan,
        }


def train_neurons(
    model: Model,
    neurons: NeuronSet,
    tokens: Sequence[Int[torch.Tensor, " pos"]],
    options: TrainOptions = TrainOptions(),
    progress: Callable[[int, float], None] | None = None,
) -> tuple[NeuronDelta, TrainRecord]:
    """Train only ``neurons``' parameter entries on ``tokens`` (documents, BOS first), causal-LM loss.

    The model is left exactly as it was. ``progress(step, loss)`` is called after every step.

    Returns:
        The trained entries, and the training record.

    Raises:
        ValueError: The set is empty, there are no documents, or the set does not fit the model.
    """
    if len(neurons) == 0:
        raise ValueError("The neuron set is empty: there is nothing to train.")
    if not tokens:
        raise ValueError("No training documents.")
    check_neurons_fit(model, neurons)
    device = next(model.parameters()).device
    base = neuron_indices(model, neurons, options.biases)
    state = model.state_dict()
    start_values = {path: (index, state[path].reshape(-1)[index].detach().clone()) for path, index in base.items()}
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    batches = list(iter_batches(tokens, pad_id_of(model), options.batch_tokens, "cpu"))
    losses, n_tokens, began = [], 0, time.perf_counter()
    with patched(model, start_values, trainable=True) as patches:
        params = [p.values for p in patches.values()]
        optimiser = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
        for _ in range(options.epochs):
            for i in rng.permutation(len(batches)):
                loss = _step(model, batches[i], device, params, optimiser, options.max_grad_norm)
                losses.append(loss)
                n_tokens += batches[i].n_tokens
                if progress is not None:
                    progress(len(losses), loss)
        trained = {
            path: (start_values[path][0], patch.values.detach().cpu().clone()) for path, patch in patches.items()
        }
    record = TrainRecord(
        len(losses), n_tokens, time.perf_counter() - began, sum(int(i.numel()) for i in base.values()), losses
    )
    shapes = {path: list(state[path].shape) for path in base}
    meta = {
        "model": model.cfg.model_name,
        "workbench": workbench_version(),
        "train_options": asdict(options),
        "train_documents": len(tokens),
        "record": record.summary(),
        "shapes": shapes,
    }
    return NeuronDelta(trained, neurons, meta), record


def _step(
    model: Model,
    batch: Batch,
    device: torch.device,
    params: list[nn.Parameter],
    optimiser: torch.optim.Optimizer,
    max_grad_norm: float,
) -> float:
    optimiser.zero_grad(set_to_none=True)
    loss = mean_next_token_loss(model, batch.tokens.to(device), batch.mask.to(device))
    loss.backward()
    if max_grad_norm and max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimiser.step()
    return float(loss.detach())


def check_neurons_fit(model: Model, neurons: NeuronSet) -> None:
    """Refuse neurons outside the model (a set made for another model)."""
    dims = NeuronDims.of(model)
    for structure, rows in neurons.neurons.items():
        if len(rows) and (rows[:, 0].max() >= dims.n_layers or rows[:, 1].max() >= structure_size(dims, structure)):
            raise ValueError(f"The {structure} neurons do not fit this model: a set made for another model?")
