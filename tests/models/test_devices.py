"""``--n-devices``: a model's layers split over devices, the analyses' hooks following each layer.

Without GPUs the split puts every layer on the CPU (TransformerLens's rule gives the CPU for every
block there), so these tests run the multi-device code path (the split, the residual moves
between blocks, every hook's moves to its activation's device) and hold it to the one-device
numbers; that tensors really cross GPUs is untested here (docs: README, "Reproducing with the
papers' models").
"""

import json

import pytest
import torch

from workbench.analyses import clt_train, ffn, finetune, lens, loss, plnd
from workbench.errors import WorkbenchError
from workbench.models.devices import block_device, devices_of, split_layers
from workbench.models.loading import load_model
from workbench.runs.job import run
from workbench.runs.options import RunOptions

ANALYSES = {
    "loss": loss.Options(documents=3),
    "lens": lens.Options(documents=2, per_document=2, accuracy_documents=2),
    "plnd": plnd.Options(documents=4, value=0.1, specificity=0.5),
    "ffn": ffn.Options(documents=3),
    "finetune": finetune.Options(sizes=(4,), random_size=0, documents=2, epochs=1),
    "clt-train": clt_train.Options(features=16, documents=4, tokens=256, batch=128, heldout=2, block_documents=8),
}


def test_split_puts_each_block_where_transformer_lens_forward_expects_it():
    model = split_layers(load_model("tiny-gated"), "cpu", 2)
    assert model.cfg.n_devices == 2
    assert devices_of(model) == ["cpu", "cpu"] and block_device(model, 1) == torch.device("cpu")
    tokens = torch.tensor([[1, 40, 50, 60]])
    torch.testing.assert_close(model(tokens), load_model("tiny-gated")(tokens), rtol=0, atol=0)


def test_more_gpus_than_the_machine_has_are_refused_with_the_fix():
    with pytest.raises(WorkbenchError, match="Lower --n-devices"):
        split_layers(load_model("tiny"), "cuda", torch.cuda.device_count() + 1)


def test_a_split_run_gives_the_one_device_numbers(tmp_path):
    for n in (1, 2):
        run(
            RunOptions(model="tiny-gated", languages=("en", "de"), n_devices=n),
            dict(ANALYSES),
            tmp_path / str(n),
            show_progress=False,
        )
    split = json.loads((tmp_path / "2" / "manifest.json").read_text())
    assert split["run"]["n_devices"] == 2 and split["model"]["details"]["devices"] == ["cpu", "cpu"]
    for name in ("loss", "lens", "plnd", "ffn", "finetune", "clt-train"):
        one, two = (json.loads((tmp_path / str(n) / f"{name}.json").read_text()) for n in (1, 2))
        if name == "finetune":  # its record holds the training time
            for record in (one, two):
                for entry in record["runs"]:
                    entry["record"].pop("seconds")
        if name == "clt-train":
            one["training"]["seconds"] = two["training"]["seconds"] = 0
        assert one == two, name
