"""Model diffing through a base transcoder: a model against itself changes nothing; a fine-tune
that writes one known direction shows up first in the feature that reads it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from workbench.clt.features.diff import Diff, measure
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.models.loading import tiny_model

L, D, F = 2, 64, 48


@pytest.fixture(scope="module")
def setting():
    model = tiny_model("tiny-gated")
    clt = CrossLayerTranscoder(CLTConfig(n_layers=L, d_model=D, n_features=F), seed=1)
    with torch.no_grad():
        clt.log_threshold.fill_(math.log(0.05))
    g = torch.Generator().manual_seed(0)
    docs = {
        lang: [torch.cat([torch.tensor([0]), torch.randint(1, 256, (12,), generator=g)]) for _ in range(6)]
        for lang in ("aa", "bb")
    }
    return model, clt, docs


def test_diff_against_itself_is_zero(setting):
    model, clt, docs = setting
    diff = Diff(measure(model, clt, docs), measure(model, clt, docs))
    for what in ("frequency", "active_mean", "mean"):
        assert not diff.delta(what).any()
    assert diff.top_changed(5) == []
    assert all(b == t for rows in diff.fvu().values() for b, t in rows)
    assert all(r["score base"] == r["score fine-tuned"] for r in diff.identity(3))
    assert all(r["mean |d frequency|"] == 0 for r in diff.layer_summary())


def test_known_direction_shows_up_in_the_feature_that_reads_it(setting):
    model, clt, docs = setting
    feature = 17
    tuned = copy.deepcopy(model)
    direction = clt.W_enc[1, :, feature].detach() / clt.W_enc[1, :, feature].norm()
    with torch.no_grad():
        # a fine-tune of layer 0's MLP bias along the direction layer 1's feature reads
        tuned.blocks[0].mlp.b_out += 0.5 * direction / tuned.blocks[1].ln2.w
    diff = Diff(measure(model, clt, docs), measure(tuned, clt, docs))
    top = diff.top_changed(3)
    assert (top[0].layer, top[0].feature) == (1, feature)
    assert all(t > b for b, t in top[0].active_mean.values())  # it reads more of the direction
    assert not diff.delta("mean")[:, 0].any()  # layer 0's inputs are untouched
    assert diff.layer_summary()[1]["mean |d frequency|"] > 0
    assert np.isfinite([r["fvu fine-tuned"] for r in diff.layer_summary()]).all()


def test_language_strength_is_the_specific_features_by_hand(setting):
    """Each row: the base's features specific to the language in that layer, their mean frequency
    and mean activation on the language's tokens, on each side."""
    model, clt, docs = setting
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.blocks[0].mlp.b_out += 0.3 * torch.randn(D, generator=torch.Generator().manual_seed(4))
    diff = Diff(measure(model, clt, docs), measure(tuned, clt, docs), min_frequency=0.05, specific_share=0.6)
    rows = diff.language_strength()
    assert rows
    for row in rows:
        i, layer = diff.languages.index(row["language"]), row["layer"]
        freq = np.stack([diff.base.stats[lang].frequency[layer] for lang in diff.languages])  # [languages, F]
        share = freq / np.where(freq.sum(0) > 0, freq.sum(0), 1)
        mine = (freq[i] >= 0.05) & (share[i] >= 0.6)
        assert row["features"] == mine.sum() > 0
        lang = row["language"]
        for side, name in ((diff.base, "base"), (diff.tuned, "fine-tuned")):
            assert row[f"frequency {name}"] == pytest.approx(side.stats[lang].frequency[layer][mine].mean())
            assert row[f"mean {name}"] == pytest.approx(side.stats[lang].mean[layer][mine].mean())
    same = Diff(diff.base, diff.base, min_frequency=0.05, specific_share=0.6).language_strength()
    assert all(r["frequency base"] == r["frequency fine-tuned"] for r in same)
