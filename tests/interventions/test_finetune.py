import copy

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer

from workbench.interventions.finetune import NeuronDelta, TrainOptions, neuron_indices, patched, train_neurons
from workbench.lens.readout import mean_next_token_loss
from workbench.neurons.sets import STRUCTURES, NeuronDims, NeuronSet, parameter_entries, structure_size

TEXTS = ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void."]


def _neurons(model, seed=0, per_structure=3) -> NeuronSet:
    dims = NeuronDims.of(model)
    rng = np.random.default_rng(seed)
    return NeuronSet(
        {
            s: [
                [int(rng.integers(dims.n_layers)), int(rng.integers(structure_size(dims, s)))]
                for _ in range(per_structure)
            ]
            for s in STRUCTURES
        }
    )


def _documents(model, repeat=4) -> list[torch.Tensor]:
    return [model.to_tokens(t)[0] for t in TEXTS * repeat]


def _entry_mask(model, neurons: NeuronSet, path: str, shape) -> torch.Tensor:
    """The literal definition: a boolean mask of the entries ``parameter_entries`` names."""
    mask = torch.zeros(shape, dtype=torch.bool)
    layer, module_name, _ = path.split(".")[1:]
    for structure, rows in neurons.neurons.items():
        for lay, index in rows.tolist():
            if lay != int(layer) or (module_name == "mlp") != (structure == "ffn"):
                continue
            for _, param, where in parameter_entries(model, lay, structure, index):
                if param is model.get_submodule(f"blocks.{layer}.{module_name}").get_parameter(path.split(".")[-1]):
                    mask[where] = True
    return mask


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_training_changes_only_the_neurons_entries_and_leaves_the_model_as_it_was(request, fixture):
    model = request.getfixturevalue(fixture)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    neurons = _neurons(model)
    delta, _ = train_neurons(model, neurons, _documents(model), TrainOptions(epochs=3, lr=1e-2, batch_tokens=64))

    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the model itself must be left untouched"
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    assert not any("parametrizations" in k for k in after)

    trained = delta.state_dict(model)
    touched = 0
    for name, base in before.items():
        if name not in delta.values:
            assert torch.equal(trained[name], base), name
            continue
        mask = _entry_mask(model, neurons, name, base.shape)
        assert torch.equal(trained[name][~mask], base[~mask]), f"{name}: an entry outside the neurons changed"
        assert int(mask.sum()) == delta.values[name][0].numel()
        touched += int((trained[name][mask] != base[mask]).sum())
    assert touched > 0.9 * delta.n_parameters


def test_parametrized_training_equals_masked_gradient_training(tiny_gated):
    """The definition: AdamW on full weights whose gradients are masked to the neurons' entries."""
    options = TrainOptions(epochs=4, lr=5e-3, batch_tokens=10_000)  # one batch: the same step order
    neurons = _neurons(tiny_gated, seed=1)
    docs = _documents(tiny_gated, repeat=1)
    delta, record = train_neurons(tiny_gated, neurons, docs, options)

    literal = copy.deepcopy(tiny_gated)
    for p in literal.parameters():
        p.requires_grad_(False)
    trained = []
    for name in delta.values:
        param = literal.get_parameter(name)
        mask = _entry_mask(literal, neurons, name, param.shape)
        param.requires_grad_(True)
        param.register_hook(lambda grad, mask=mask: grad * mask)
        trained.append(param)
    optimiser = torch.optim.AdamW(trained, lr=options.lr, weight_decay=0.0)
    from workbench.data.batching import iter_batches, pad_id_of

    (batch,) = iter_batches(docs, pad_id_of(literal), options.batch_tokens)
    losses = []
    for _ in range(options.epochs):
        optimiser.zero_grad()
        loss = mean_next_token_loss(literal, batch.tokens, batch.mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, options.max_grad_norm)
        optimiser.step()
        losses.append(float(loss.detach()))
    np.testing.assert_allclose(record.losses, losses, rtol=1e-5)
    expected = delta.state_dict(tiny_gated)
    for name in delta.values:
        torch.testing.assert_close(literal.get_parameter(name).detach(), expected[name], rtol=1e-5, atol=1e-7)


def test_training_lowers_the_training_loss(tiny):
    docs = _documents(tiny, repeat=8)
    delta, record = train_neurons(
        tiny, _neurons(tiny, per_structure=6), docs, TrainOptions(epochs=6, lr=2e-2, batch_tokens=128)
    )
    summary = record.summary()
    assert summary["last_loss"] < summary["first_loss"] - 0.1
    from workbench.data.batching import iter_batches, pad_id_of

    (batch,) = iter_batches(docs, pad_id_of(tiny), 10_000)
    with torch.no_grad():
        base = float(mean_next_token_loss(tiny, batch.tokens, batch.mask))
        with delta.applied(tiny):
            tuned = float(mean_next_token_loss(tiny, batch.tokens, batch.mask))
    assert tuned < base - 0.1


def test_delta_round_trips_and_applies_like_a_model_with_those_weights(tiny_gated, tmp_path):
    neurons = _neurons(tiny_gated, seed=2)
    delta, _ = train_neurons(
        tiny_gated,
        neurons,
        _documents(tiny_gated),
        TrainOptions(epochs=2, lr=1e-2),
    )
    delta.meta["language"] = "de"
    loaded = NeuronDelta.load(delta.save(tmp_path / "de.safetensors"))
    assert loaded.neurons.to_dict() == neurons.to_dict() and loaded.meta == delta.meta
    for name, (index, values) in delta.values.items():
        assert torch.equal(loaded.values[name][0], index) and torch.equal(loaded.values[name][1], values)

    tokens = tiny_gated.to_tokens(TEXTS[0])
    exported = HookedTransformer(tiny_gated.cfg)
    from safetensors.torch import load_file

    exported.load_state_dict(load_file(str(loaded.export(tiny_gated, tmp_path / "full.safetensors"))))
    with torch.no_grad(), loaded.applied(tiny_gated):
        applied = tiny_gated(tokens)
    assert torch.equal(applied, exported(tokens))
    with torch.no_grad():
        assert not torch.equal(tiny_gated(tokens), applied)


def test_bias_entries_follow_the_model(tiny):
    neurons = NeuronSet({"ffn": [[0, 3]], "attn_q": [[1, 2]]})
    assert not any(".b_" in k for k in neuron_indices(tiny, neurons))  # zero biases: a bias-free model
    assert {"blocks.0.mlp.b_in", "blocks.1.attn.b_Q"} <= set(neuron_indices(tiny, neurons, biases=True))
    with_bias = copy.deepcopy(tiny)
    with torch.no_grad():
        with_bias.blocks[0].mlp.b_in.normal_()
    assert "blocks.0.mlp.b_in" in neuron_indices(with_bias, neurons)


def test_mean_next_token_loss_equals_cross_entropy_of_the_full_logits(tiny):
    from workbench.data.batching import iter_batches, pad_id_of

    (batch,) = iter_batches(_documents(tiny, repeat=1), pad_id_of(tiny), 10_000)
    logits = tiny(batch.tokens)[:, :-1]
    real = batch.mask[:, 1:].bool()
    expected = torch.nn.functional.cross_entropy(logits[real], batch.tokens[:, 1:][real])
    got = mean_next_token_loss(tiny, batch.tokens, batch.mask, chunk_rows=7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_patches_are_removed_after_an_error(tiny):
    values = {"blocks.0.mlp.W_in": (torch.tensor([0, 1]), torch.zeros(2))}
    with pytest.raises(RuntimeError), patched(tiny, values, trainable=True):
        raise RuntimeError("boom")
    assert not any("parametrizations" in k for k in tiny.state_dict())
    assert all(p.requires_grad for p in tiny.parameters())


def test_bad_input_is_refused(tiny, tiny_gated):
    with pytest.raises(ValueError, match="empty"):
        train_neurons(tiny, NeuronSet(), _documents(tiny))
    with pytest.raises(ValueError, match="No training documents"):
        train_neurons(tiny, NeuronSet({"ffn": [[0, 1]]}), [])
    with pytest.raises(ValueError, match="another model"):
        train_neurons(tiny, NeuronSet({"ffn": [[5, 1]]}), _documents(tiny))
    delta, _ = train_neurons(tiny_gated, NeuronSet({"attn_k": [[1, 3]]}), _documents(tiny_gated, 1))
    with pytest.raises(ValueError, match="does not fit"):
        delta.check_fits(tiny)
