import numpy as np
import pytest
import torch

from workbench.data.batching import tokenize
from workbench.language.classifier import SPECIAL_LABELS
from workbench.language.vocabulary import VocabLanguages
from workbench.lens.layer_language import (
    CATEGORIES,
    LensResult,
    category_counts,
    lens_groups,
    summarise,
    token_categories,
)
from workbench.lens.logit_lens import LensReadout, logit_lens, select_positions
from workbench.models.model import source_of

TEXTS = ["In the beginning God created", "Im Anfang schuf Gott", "神爱世人", "Mungu aliupenda ulimwengu"]


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_last_layer_of_the_lens_is_the_models_own_distribution(request, fixture):
    model = request.getfixturevalue(fixture)
    tokens = tokenize(model, TEXTS)
    readout = logit_lens(model, tokens, k=5, positions="all", batch_tokens=64)
    assert readout.n_layers == model.cfg.n_layers + 1
    for row, (doc, pos) in enumerate(zip(readout.doc, readout.position)):
        with torch.no_grad():
            probs = torch.softmax(model(tokens[doc][None])[0, pos], -1)
        top = probs.topk(5)
        np.testing.assert_array_equal(readout.topk_ids[-1, row], top.indices.numpy())
        np.testing.assert_allclose(readout.topk_probs[-1, row], top.values.numpy(), rtol=1e-4, atol=1e-6)
        assert readout.final_top_prob[-1, row] == pytest.approx(top.values[0].item(), rel=1e-4)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum().item()
        assert readout.entropy[-1, row] == pytest.approx(entropy, rel=1e-4)


def test_batching_does_not_change_the_lens(tiny_gated):
    tokens = tokenize(tiny_gated, TEXTS)
    batched = logit_lens(tiny_gated, tokens, k=3, positions="all", batch_tokens=256)
    order = np.lexsort((batched.position, batched.doc))
    singles = LensReadout.concat([logit_lens(tiny_gated, [t], k=3, positions="all") for t in tokens])
    np.testing.assert_array_equal(batched.topk_ids[:, order], singles.topk_ids)
    np.testing.assert_allclose(batched.entropy[:, order], singles.entropy, rtol=1e-5, atol=1e-6)


def test_final_norm_switch_changes_the_readout_but_not_the_last_layer_prediction(tiny_gated):
    tokens = tokenize(tiny_gated, TEXTS[:2])
    normed = logit_lens(tiny_gated, tokens, k=3, positions="all")
    raw = logit_lens(tiny_gated, tokens, k=3, positions="all", final_norm=False)
    assert not np.allclose(normed.entropy, raw.entropy)
    np.testing.assert_allclose(normed.final_top_prob[-1], normed.topk_probs[-1, :, 0], rtol=1e-5)


def test_group_masses_of_a_partition_sum_to_one(tiny):
    tokens = tokenize(tiny, TEXTS[:2])
    vocab = np.arange(tiny.cfg.d_vocab)
    groups = {"even": vocab % 2 == 0, "odd": vocab % 2 == 1}
    readout = logit_lens(tiny, tokens, k=3, positions="sample", per_doc=3, groups=groups)
    np.testing.assert_allclose(readout.group_mass.sum(-1), 1.0, rtol=1e-5)
    assert readout.groups == ["even", "odd"]


def test_positions_never_read_bos():
    rng = np.random.default_rng(0)
    lengths = [1, 2, 5, 30]
    assert [p.tolist() for p in select_positions(lengths, "last", 4, rng)] == [[], [1], [4], [29]]
    sampled = select_positions(lengths, "sample", 4, rng)
    assert [len(p) for p in sampled] == [0, 1, 4, 4] and all(0 not in p for p in sampled)
    assert select_positions([4], "all", 2, rng)[0].tolist() == [1, 2, 3]


def _toy_vocab() -> VocabLanguages:
    """Token ids 0..7: none, unknown, en, de, ambiguous(en,de), ambiguous(de,fr), fr, de."""
    languages = ["de", "en", "fr"]
    names = list(SPECIAL_LABELS) + languages
    label = {n: i for i, n in enumerate(names)}
    bit = {lang: 1 << i for i, lang in enumerate(languages)}
    rows = [
        ("none", 0),
        ("unknown", 0),
        ("en", bit["en"]),
        ("de", bit["de"]),
        ("ambiguous", bit["en"] | bit["de"]),
        ("ambiguous", bit["de"] | bit["fr"]),
        ("fr", bit["fr"]),
        ("de", bit["de"]),
    ]
    return VocabLanguages(
        names, np.array([label[n] for n, _ in rows], dtype=np.int16), np.array([b for _, b in rows], dtype=np.int64)
    )


def test_token_categories_follow_the_documented_rules():
    vocab = _toy_vocab()
    cats = [CATEGORIES[c] for c in token_categories(vocab, "de")]
    assert cats == ["none", "none", "english", "input", "ambiguous", "input", "other", "input"]
    cats_fr = [CATEGORIES[c] for c in token_categories(vocab, "fr")]
    assert cats_fr == ["none", "none", "english", "other", "ambiguous", "input", "input", "other"]


def test_language_ratio_on_a_hand_built_readout():
    """Two layers, two positions, top-2: the shares are counted by hand."""
    vocab = _toy_vocab()
    topk = np.array(
        [
            [[3, 7], [0, 6]],  # layer 0: de, de | none, fr
            [[2, 4], [2, 3]],
        ]
    )  # layer 1: en, ambiguous(en,de) | en, de
    counts = category_counts(topk, token_categories(vocab, "de"))
    #                         english input other ambiguous none
    assert counts.tolist() == [[0, 2, 1, 0, 1], [2, 1, 0, 1, 0]]
    groups = lens_groups(vocab, "de")
    mass = np.stack(
        [np.stack([np.full(2, 0.1), np.full(2, 0.6)], -1), np.stack([np.full(2, 0.5), np.full(2, 0.2)], -1)]
    )
    readout = LensReadout(
        doc=np.array([0, 1]),
        position=np.array([1, 1]),
        topk_ids=topk,
        topk_probs=np.full((2, 2, 2), 0.5, dtype=np.float32),
        entropy=np.ones((2, 2)),
        final_top_prob=np.ones((2, 2)),
        group_mass=mass,
        groups=list(groups),
    )
    r = summarise(readout, vocab, "de")
    assert r.share("english") == [0.0, 0.5] and r.share("input") == [0.5, 0.25]
    assert r.mass_english == pytest.approx([0.1, 0.5]) and r.mass_input == pytest.approx([0.6, 0.2])
    assert r.n_documents == 2 and r.n_positions == 2 and r.k == 2


def test_lens_result_round_trips(tmp_path):
    vocab = _toy_vocab()
    topk = np.array([[[3, 7]], [[2, 4]]])
    readout = LensReadout(
        np.array([0]),
        np.array([1]),
        topk,
        np.full((2, 1, 2), 0.5, dtype=np.float32),
        np.ones((2, 1)),
        np.ones((2, 1)),
        np.zeros((2, 1, 2)),
        ["english", "input"],
    )
    result = LensResult({"de": summarise(readout, vocab, "de")}, ["embed", "1"], {"lens_k": 2}, {"margin": 1.0}, [])
    result.save(tmp_path)
    back = LensResult.load(tmp_path)
    assert back.languages["de"].counts == result.languages["de"].counts
    assert back.table() == result.table()


def test_lens_works_through_the_bridge(tmp_path):
    """A model loaded through TransformerBridge (here GPT-BigCode) gives the same last-layer readout."""
    from conftest import BRIDGED, save_tiny_hf

    from workbench.models.loading import load_model

    save_tiny_hf(BRIDGED, tmp_path)
    model = load_model(str(tmp_path))
    assert source_of(model).route.endswith("+bridge")
    tokens = tokenize(model, TEXTS[:1])
    readout = logit_lens(model, tokens, k=2, positions="all")
    with torch.no_grad():
        probs = torch.softmax(model(tokens[0][None])[0], -1)
    np.testing.assert_allclose(readout.topk_probs[-1, :, 0], probs[1:].max(-1).values.numpy(), rtol=1e-4)
