import math

import numpy as np
import pytest
import torch
from conftest import save_tiny_hf

from workbench.ffn.collector import summarise
from workbench.ffn.metrics import frequency, ranks, row_flatness, sparsity, spearman
from workbench.ffn.result import FFNResult, rank_correlations
from workbench.ffn.similarity import correlation_of_correlations, layer_similarity, linear_cka
from workbench.ffn.summary import FFNSummary

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form.",
    "Im Anfang schuf Gott Himmel und Erde.",
    "Au commencement, Dieu créa les cieux et la terre.",
    "Und Gott sprach.",
]


def test_metrics_on_hand_built_matrices():
    assert sparsity([[0, 1], [0, 0]]) == 0.75
    assert sparsity([[0.2, 1.0], [0.4, -0.3]], tol=0.5) == 0.75
    np.testing.assert_allclose(frequency([[0, 1], [2, 0], [3, 0]]), [2 / 3, 1 / 3])
    assert row_flatness([[1, 1, 1, 1]]) == pytest.approx(math.log(4))  # constant row: perfectly flat
    assert row_flatness([[0, 0, 0, 5]]) == pytest.approx(0.0)  # one unit carries everything
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))  # [0, 1, 2] -> [0, .5, 1] -> [0, 1/3, 2/3]
    assert row_flatness([[0, 1, 2], [1, 1, 1]]) == pytest.approx((expected + math.log(3)) / 2)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    np.testing.assert_allclose(ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    # Ties: Pearson of the average ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4].
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_cka_and_correlation_of_correlations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)  # rotation and scale invariant
    y = rng.normal(size=(40, 9))
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(feature_form)
    assert linear_cka(x, y) < 0.5
    assert correlation_of_correlations(x, 2 * x + 1) == pytest.approx(1.0)
    stacked = np.stack([x, x @ q, rng.normal(size=(40, 6))], axis=1)
    matrix = layer_similarity(stacked, stacked[:, :2], "cka")
    assert matrix.shape == (3, 2) and matrix[0, 1] == pytest.approx(1.0) and matrix[2, 0] < 0.6
    with pytest.raises(ValueError, match="same inputs"):
        layer_similarity(stacked, stacked[:5])


def _tokens(model):
    return [model.to_tokens(t)[0] for t in TEXTS]


def _full_rows(model, tokens, include_bos=False):
    """The literal computation: every document alone, all its activations kept."""
    detectors, combinators = [[] for _ in model.blocks], [[] for _ in model.blocks]
    for toks in tokens:
        _, cache = model.run_with_cache(toks[None], names_filter=lambda n: n.endswith("mlp.hook_post"))
        for layer, block in enumerate(model.blocks):
            post = cache[f"blocks.{layer}.mlp.hook_post"][0, 0 if include_bos else 1 :]
            detectors[layer].append(post)
            combinators[layer].append((post @ block.mlp.W_out + block.mlp.b_out).detach())
    return [torch.cat(d).numpy() for d in detectors], [torch.cat(c).numpy() for c in combinators]


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_streamed_summaries_equal_the_metrics_on_all_rows(request, fixture):
    model = request.getfixturevalue(fixture)
    tokens = _tokens(model)
    ids = [str(i) for i in range(len(tokens))]
    batched = summarise(model, "xx", tokens, ids, tolerance=0.05, pooled=True, batch_tokens=64)
    single = summarise(model, "xx", tokens, ids, tolerance=0.05, pooled=True, batch_tokens=1)
    detectors, combinators = _full_rows(model, tokens)
    for name, rows in (("detector", detectors), ("combinator", combinators)):
        for summary in (batched, single):
            sums = summary.sums[name]
            assert sums.rows == len(rows[0])
            for layer, acts in enumerate(rows):
                assert sums.sparsity()[layer] == pytest.approx(sparsity(acts, 0.05))
                np.testing.assert_allclose(sums.frequency()[layer], frequency(acts, 0.05))
                assert sums.flatness()[layer] == pytest.approx(row_flatness(acts), rel=1e-6)
                np.testing.assert_allclose(sums.mean()[layer], acts.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(batched.pooled[name], single.pooled[name], rtol=1e-4, atol=1e-6)
    # Pooled: each document's mean over its counted positions, in document order.
    first_len = len(tokens[0]) - 1
    np.testing.assert_allclose(batched.pooled["detector"][0, 1], detectors[1][:first_len].mean(0), rtol=1e-4, atol=1e-6)


def test_last_position_rows(tiny):
    tokens = _tokens(tiny)
    summary = summarise(
        tiny, "xx", tokens, [str(i) for i in range(len(tokens))], tolerance=0.0, positions="last", batch_tokens=64
    )
    lasts = []
    for toks in tokens:
        _, cache = tiny.run_with_cache(toks[None], names_filter="blocks.0.mlp.hook_post")
        lasts.append(cache["blocks.0.mlp.hook_post"][0, -1])
    assert summary.sums["detector"].rows == len(tokens)
    np.testing.assert_allclose(
        summary.sums["detector"].mean()[0], torch.stack(lasts).mean(0).numpy(), rtol=1e-4, atol=1e-6
    )


def test_summary_round_trip_and_rank_correlations(tiny, tmp_path):
    tokens = _tokens(tiny)
    ids = [str(i) for i in range(len(tokens))]
    parallel = {
        lang: summarise(tiny, lang, tokens[i : i + 2], ids[i : i + 2], pooled=True)
        for i, lang in enumerate(["en", "de"])
    }
    unrelated = {
        lang: summarise(tiny, lang, tokens[i + 3 : i + 4], ids[i + 3 : i + 4]) for i, lang in enumerate(["en", "de"])
    }
    parallel["en"].save(tmp_path / "en.safetensors")
    loaded = FFNSummary.load(tmp_path / "en.safetensors")
    assert loaded.ids == ids[:2] and loaded.sums["detector"].rows == parallel["en"].sums["detector"].rows
    np.testing.assert_array_equal(loaded.sums["combinator"].total, parallel["en"].sums["combinator"].total)
    np.testing.assert_array_equal(loaded.pooled["detector"], parallel["en"].pooled["detector"].astype(np.float32))

    corr = rank_correlations(parallel, unrelated, "detector")
    en, de = (parallel[lang].sums["detector"].mean() for lang in ("en", "de"))
    en_u, de_u = (unrelated[lang].sums["detector"].mean() for lang in ("en", "de"))
    assert corr["parallel"][1, 0, 1] == pytest.approx(spearman(en[1], de[1]))
    assert corr["unrelated"][1, 0, 1] == pytest.approx((spearman(en[1], de_u[1]) + spearman(en_u[1], de[1])) / 2)
    assert corr["unrelated"][1, 0, 0] == pytest.approx(spearman(en[1], en_u[1]))
    result = FFNResult.build(parallel, unrelated)
    result.save(tmp_path)
    again = FFNResult.load(tmp_path)
    assert again.languages == ["en", "de"] and again.table("detector")[1]["rho parallel"] == pytest.approx(
        result.table()[1]["rho parallel"]
    )


def test_xglm_detectors_are_the_hf_fc1_activations(tmp_path):
    """XGLM (the FFN paper's family, converted natively): hook_post is activation_fn(fc1(x)) of the
    HF model, and the combinator is fc2's output."""
    from workbench.models.loading import load_model

    hf = save_tiny_hf("xglm", tmp_path / "xglm")
    model = load_model(str(tmp_path / "xglm"))
    tokens = model.to_tokens(TEXTS[0])
    seen = {}
    handles = [
        hf.model.layers[1].fc2.register_forward_hook(lambda m, inp, out: seen.update(fc2_in=inp[0], fc2_out=out))
    ]
    with torch.no_grad():
        hf(tokens)
    for h in handles:
        h.remove()
    summary = summarise(model, "en", [tokens[0]], ["0"], tolerance=0.0, pooled=True, include_bos=True)
    np.testing.assert_allclose(
        summary.pooled["detector"][0, 1], seen["fc2_in"][0].mean(0).numpy(), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        summary.pooled["combinator"][0, 1], seen["fc2_out"][0].mean(0).numpy(), rtol=1e-4, atol=1e-5
    )


def test_ffn_command_writes_results_report_and_compares_models(tmp_path, capsys):
    from workbench.analyses import ffn
    from workbench.cli import main
    from workbench.errors import WorkbenchError

    out = tmp_path / "ffn"
    args = [
        "ffn",
        "--model",
        "tiny",
        "--languages",
        "en,de,fr",
        "--documents",
        "4",
        "--compare-models",
        "tiny-gated",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    result = FFNResult.load(out)
    assert result.languages == ["en", "de", "fr"] and result.n_layers == 2
    assert {(s["b"], s["sublayer"], s["measure"]) for s in result.similarity} == {
        (b, sub, m) for b in ("tiny", "tiny-gated") for sub in ("detector", "combinator") for m in ("cka", "rsa")
    }
    self_cka = next(s["matrix"] for s in result.similarity if s["b"] == "tiny" and s["measure"] == "cka")
    assert self_cka[0][0] == pytest.approx(1.0) and self_cka[1][1] == pytest.approx(1.0)
    assert all(0 <= v <= 1 for row in result.metrics["detector"]["sparsity"].values() for v in row)
    text = (out / "report.html").read_text()
    assert "FFN detectors and combinators" in text and "at its peak" in text
    (parts,) = (out / "parts").iterdir()
    summary = FFNSummary.load(parts / "de-unrelated.safetensors")
    assert not set(summary.ids) & set(FFNSummary.load(parts / "de-parallel.safetensors").ids)
    with pytest.raises(WorkbenchError, match="positions"):
        ffn.Options(positions="middle")
