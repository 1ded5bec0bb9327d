import copy

import numpy as np
import pytest
import torch

from workbench.neurons.masking import mask_hooks, switched_off
from workbench.neurons.sets import STRUCTURES, NeuronDims, NeuronSet, parameter_entries, structure_size

TEXT = "In the beginning God created the heaven and the earth."


def _some_neurons(model, seed=0, per_structure=5) -> NeuronSet:
    dims = NeuronDims.of(model)
    rng = np.random.default_rng(seed)
    rows = {}
    for s in STRUCTURES:
        size = structure_size(dims, s)
        rows[s] = [[int(rng.integers(dims.n_layers)), int(rng.integers(size))] for _ in range(per_structure)]
    return NeuronSet(rows)


def _zeroed_copy(model, neurons: NeuronSet):
    edited = copy.deepcopy(model)
    with torch.no_grad():
        for structure, rows in neurons.neurons.items():
            for layer, index in rows:
                for _, param, where in parameter_entries(edited, int(layer), structure, int(index)):
                    param[where] = 0
    return edited


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_hook_masking_equals_zeroing_the_parameters(request, fixture, structure):
    model = request.getfixturevalue(fixture)
    neurons = _some_neurons(model).only([structure])
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        base = model(tokens)
        with switched_off(model, neurons):
            masked = model(tokens)
        edited = _zeroed_copy(model, neurons)(tokens)
    assert not torch.allclose(masked, base)  # the neurons matter
    torch.testing.assert_close(masked, edited, rtol=1e-5, atol=1e-5)


def test_masks_are_removed_after_the_block_even_on_error(tiny_gated):
    neurons = _some_neurons(tiny_gated)
    tokens = tiny_gated.to_tokens(TEXT)
    with torch.no_grad():
        before = tiny_gated(tokens)
        with pytest.raises(RuntimeError), switched_off(tiny_gated, neurons):
            raise RuntimeError("boom")
        after = tiny_gated(tokens)
    assert all(not hp.fwd_hooks for hp in tiny_gated.hook_dict.values())
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_one_hook_per_layer_and_structure(tiny_gated):
    neurons = NeuronSet({"ffn": [[0, 1], [0, 2], [1, 3]], "attn_v": [[1, 0]]})
    names = [name for name, _ in mask_hooks(tiny_gated, neurons)]
    assert sorted(names) == ["blocks.0.mlp.hook_post", "blocks.1.attn.hook_v", "blocks.1.mlp.hook_post"]


def test_an_empty_set_changes_nothing(tiny):
    tokens = tiny.to_tokens(TEXT)
    with torch.no_grad(), switched_off(tiny, NeuronSet({})):
        out = tiny(tokens)
        assert all(not hp.fwd_hooks for hp in tiny.hook_dict.values())
    torch.testing.assert_close(out, tiny(tokens))


def test_each_batch_row_can_have_its_own_set(tiny_gated):
    sets = [_some_neurons(tiny_gated, seed=1), None, _some_neurons(tiny_gated, seed=2)]
    tokens = tiny_gated.to_tokens(TEXT).repeat(3, 1)
    with torch.no_grad():
        with switched_off(tiny_gated, sets):
            together = tiny_gated(tokens)
        for row, neurons in enumerate(sets):
            with switched_off(tiny_gated, neurons):
                alone = tiny_gated(tokens[row : row + 1])
            torch.testing.assert_close(together[row], alone[0], rtol=1e-5, atol=1e-5)
