"""The language probe held to its definition: the rows are the hook values at the kept tokens,
the baselines are the hand counts, a probe finds a planted language direction and not an absent
one, and the slice runs on a tiny model and writes its section."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.lens.probe import ProbeRows, fit_probe, probe_points, residual_rows, shared_tokens, token_baseline


def _docs(seed: int, n: int, length: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.tensor([1]), torch.randint(3, 250, (length - i % 3,), generator=g)]) for i in range(n)]


def test_rows_are_the_residual_hooks_without_bos(tiny_gated):
    model, L = tiny_gated, tiny_gated.cfg.n_layers
    docs = {"aa": _docs(0, 3, 7), "bb": _docs(1, 2, 9)}
    rows = residual_rows(model, docs, max_tokens=10, batch_tokens=16)
    expected, langs, ids = [], [], []
    for index, tokens in enumerate(docs.values()):
        taken = []
        for doc in tokens:
            _, cache = model.run_with_cache(doc[None])
            points = [cache[f"blocks.{p}.hook_resid_pre"] for p in range(L)]
            points.append(cache[f"blocks.{L - 1}.hook_resid_post"])
            taken += [(torch.stack([x[0, pos] for x in points]), int(doc[pos])) for pos in range(1, len(doc))]
        taken = taken[:10]
        expected += [x for x, _ in taken]
        ids += [t for _, t in taken]
        langs += [index] * len(taken)
    assert rows.X.shape == (L + 1, len(expected), model.cfg.d_model)
    torch.testing.assert_close(rows.X, torch.stack(expected, 1), rtol=1e-5, atol=1e-5)
    assert rows.token.tolist() == ids and rows.language.tolist() == langs


def test_baselines_are_the_hand_counts():
    tokens = torch.tensor([5, 5, 5, 6, 7, 7, 8])
    langs = torch.tensor([0, 0, 1, 1, 1, 0, 2])
    assert token_baseline(tokens, langs, 3) == {5: 0, 6: 1, 7: 0, 8: 2}  # 7: a tie, the lower index
    assert shared_tokens(tokens, langs) == {5, 7}


def _planted(n: int, d: int, seed: int) -> ProbeRows:
    """Point 0: noise only; point 1: noise plus a direction per language."""
    g = torch.Generator().manual_seed(seed)
    language = torch.arange(n) % 3
    noise = torch.randn(2, n, d, generator=g)
    directions = 3 * torch.randn(3, d, generator=torch.Generator().manual_seed(99))
    noise[1] += directions[language]
    return ProbeRows(noise, language, torch.randint(0, 4, (n,), generator=g))


def test_a_planted_direction_is_read_and_noise_is_not():
    scores, baselines = probe_points(_planted(600, 16, 0), _planted(300, 16, 1), 3, steps=50)
    assert scores[1].accuracy == 1.0 and min(scores[1].per_language) == 1.0
    assert scores[0].accuracy < 0.5  # chance is 1/3
    assert baselines["shared_share"] == 1.0 and scores[1].shared == 1.0  # 4 token ids, all in every language
    assert baselines["token"] < 0.5 and baselines["majority"] == pytest.approx(1 / 3, abs=0.01)


def test_the_fit_is_a_minimum_of_its_objective():
    rows = _planted(200, 8, 2)
    X, y = rows.X[1], rows.language
    probe = fit_probe(X, y, 3, l2=1e-2, steps=200)

    def objective(W, b):
        Z = (X - probe.mean) / probe.scale
        return float(torch.nn.functional.cross_entropy(Z @ W + b, y) + 1e-2 * (W**2).sum())

    best = objective(probe.W, probe.b)
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        assert objective(probe.W + 1e-2 * torch.randn(probe.W.shape, generator=g), probe.b) > best
        assert objective(probe.W, probe.b + 1e-2 * torch.randn(3, generator=g)) > best


def test_the_slice_runs_and_says_where_the_language_is_readable(tiny, tmp_path):
    from workbench.analyses import probe
    from workbench.runs.job import run
    from workbench.runs.options import RunOptions

    out = tmp_path / "run"
    run(
        RunOptions(model="tiny", languages=("en", "de", "ru")),
        {"probe": probe.Options(documents=6, heldout=4, tokens=200, steps=20)},
        out,
        show_progress=False,
    )
    result = probe.Result.load(out)
    assert len(result.scores) == tiny.cfg.n_layers + 1 and result.tokens["train"] == 600
    assert all(0 <= s.accuracy <= 1 for s in result.scores)
    assert result.scores[-1].accuracy > result.baselines["majority"]  # ru's bytes alone give it away
    assert not math.isnan(result.baselines["token_shared"])
    assert "linear probe reads the language" in probe.verdict(result)
    assert "Language probe" in (out / "report.html").read_text()
