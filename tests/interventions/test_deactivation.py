import math

import numpy as np
import pytest
import torch

from workbench.analyses import ablate, plnd
from workbench.data.batching import tokenize
from workbench.errors import WorkbenchError
from workbench.interventions import deactivation as deact
from workbench.interventions import measures as measures_module
from workbench.interventions.deactivation import run_deactivation
from workbench.interventions.deactivation_results import AblationResult, DeactivationResult, paper_deltas
from workbench.interventions.layer_groups import LayerGroups
from workbench.interventions.measures import (
    MeasureMemo,
    Measures,
    Setting,
    continuation_fidelities,
    continuation_fidelity,
    in_language,
    measure,
    measure_many,
    random_like,
    verse_prompts,
)
from workbench.interventions.options import GROUPS, DeactivationOptions
from workbench.lens.layer_language import ENGLISH, INPUT, NONE_CAT, OTHER
from workbench.lens.readout import greedy, next_token_predictions
from workbench.neurons.masking import switched_off
from workbench.neurons.sets import NeuronDims, NeuronSet
from workbench.runs.job import run
from workbench.runs.options import RunOptions

TEXTS = {
    "en": ["In the beginning God created the heaven", "And the earth was without form", "And God said: light"],
    "de": ["Im Anfang schuf Gott Himmel und Erde", "Und die Erde war wüst und leer", "Und Gott sprach: Licht"],
}


def test_layer_groups_split_the_depth():
    groups = LayerGroups.default(18)
    assert (groups.understanding, groups.generation) == (4, 2)
    assert list(groups.layers("understanding")) == [0, 1, 2, 3]
    assert list(groups.layers("generation")) == [16, 17]
    assert list(groups.layers("task_ffn")) == list(range(4, 16))
    neurons = NeuronSet({"ffn": [[0, 1], [5, 2], [17, 3]], "attn_q": [[5, 7], [16, 1]]})
    assert groups.restrict(neurons, "task_ffn").to_dict() == {"ffn": [[5, 2]]}
    assert groups.restrict(neurons, "task_attention").to_dict() == {"attn_q": [[5, 7]]}
    assert groups.restrict(neurons, "generation").to_dict() == {"ffn": [[17, 3]], "attn_q": [[16, 1]]}
    assert len(groups.restrict(neurons, "all")) == 5
    with pytest.raises(ValueError, match="do not fit"):
        LayerGroups(4, 3, 2)
    assert [(g.understanding, g.generation) for g in map(LayerGroups.default, (1, 2, 4))] == [(1, 0), (1, 1), (1, 1)]


def test_random_controls_match_counts_per_layer_and_structure(tiny_gated):
    dims = NeuronDims.of(tiny_gated)
    neurons = NeuronSet({"ffn": [[0, 1], [0, 2], [1, 3]], "attn_k": [[1, 0], [1, 5], [1, 31]]})
    a, b = random_like(neurons, dims, seed=0), random_like(neurons, dims, seed=1)
    for control in (a, b):
        assert control.per_layer(dims.n_layers) == neurons.per_layer(dims.n_layers)
        assert control.neurons["attn_k"][:, 1].max() < 2 * dims.d_head  # within the key/value heads
    assert a.to_dict() != b.to_dict()
    assert random_like(neurons, dims, seed=0).to_dict() == a.to_dict()


def test_predictions_are_the_models_argmax(tiny_gated):
    tokens = tiny_gated.to_tokens(TEXTS["en"][0])
    losses, predicted = next_token_predictions(tiny_gated, tokens, chunk_rows=3)
    with torch.no_grad():
        logits = tiny_gated(tokens)[:, :-1]
    torch.testing.assert_close(predicted, logits.argmax(-1), rtol=0, atol=0)
    expected = torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:], reduction="none")
    torch.testing.assert_close(losses[0], expected, rtol=1e-5, atol=1e-5)


def test_measures_equal_a_literal_computation(tiny_gated):
    tokens = tokenize(tiny_gated, TEXTS["de"])
    categories = (
        np.random.default_rng(0).choice([ENGLISH, INPUT, OTHER, NONE_CAT], tiny_gated.cfg.d_vocab).astype(np.int8)
    )
    own, labelled = in_language(categories, "de")
    got = measure(tiny_gated, tokens, own, labelled, batch_tokens=40)
    losses, correct, n_own, n_labelled = [], 0, 0, 0
    with torch.no_grad():
        for toks in tokens:
            logits = tiny_gated(toks[None])[0, :-1]
            losses += torch.nn.functional.cross_entropy(logits, toks[1:], reduction="none").tolist()
            top = logits.argmax(-1).numpy()
            correct += int((top == toks[1:].numpy()).sum())
            n_own += int((categories[top] == INPUT).sum())
            n_labelled += int(np.isin(categories[top], (ENGLISH, INPUT, OTHER)).sum())
    assert got.n_tokens == len(losses)
    assert got.loss == pytest.approx(np.mean(losses), rel=1e-5)
    assert got.accuracy == pytest.approx(correct / len(losses))
    assert got.fidelity == pytest.approx(n_own / n_labelled)


def test_deltas_are_damage_and_the_papers_summary():
    base = Measures(loss=2.0, accuracy=0.5, fidelity=0.9, n_tokens=10, continuation_fidelity=0.8)
    worse = Measures(loss=2.5, accuracy=0.4, fidelity=0.6, n_tokens=10, continuation_fidelity=None)
    d = worse.delta(base)
    assert d["loss"] == pytest.approx(0.5) and d["accuracy"] == pytest.approx(0.1)
    assert d["fidelity"] == pytest.approx(0.3) and d["continuation_fidelity"] is None
    summary = paper_deltas({"en": 0.5, "de": 0.2, "fr": 0.4})
    assert summary == pytest.approx({"Delta_Eng": 0.5, "Delta_nEng": 0.3, "Delta": 0.2})
    assert math.isnan(paper_deltas({"de": 0.1})["Delta_Eng"])


def test_greedy_continuations_equal_the_slow_loop(tiny_gated, tiny):
    for model in (tiny_gated, tiny):
        prompts = torch.stack([model.to_tokens("Hello wor")[0], model.to_tokens("Bonjour l")[0]])
        fast = greedy(model, prompts, 5)[0]
        slow = prompts
        with torch.no_grad():
            for _ in range(5):
                slow = torch.cat([slow, model(slow)[:, -1].argmax(-1, keepdim=True)], 1)
        torch.testing.assert_close(fast, slow[:, prompts.shape[1] :], rtol=0, atol=0)


def test_batched_measurements_equal_one_at_a_time(tiny_gated):
    """Settings that share forward passes (a mask per batch row) measure what each measures alone."""
    tokens = {lang: tokenize(tiny_gated, texts) for lang, texts in TEXTS.items()}
    categories = np.random.default_rng(1).choice([ENGLISH, INPUT, OTHER], tiny_gated.cfg.d_vocab).astype(np.int8)
    vocab = {lang: in_language(categories, lang) for lang in TEXTS}
    dims = NeuronDims.of(tiny_gated)
    some = NeuronSet({"ffn": [[0, 1], [1, 7]], "attn_q": [[0, 9]], "attn_k": [[1, 3]], "attn_o": [[1, 20]]})
    plan = [(lang, neurons) for lang in TEXTS for neurons in (None, some, random_like(some, dims, 0))]
    together = measure_many(
        tiny_gated, [Setting(tokens[lang], *vocab[lang], neurons) for lang, neurons in plan], batch_tokens=96
    )
    for (lang, neurons), batched in zip(plan, together):
        with switched_off(tiny_gated, neurons):
            alone = measure(tiny_gated, tokens[lang], *vocab[lang])
        assert batched.n_tokens == alone.n_tokens
        assert (batched.accuracy, batched.fidelity) == (alone.accuracy, alone.fidelity)
        assert batched.loss == pytest.approx(alone.loss, rel=1e-6)
    prompts = {lang: verse_prompts(tokens[lang], 4) for lang in TEXTS}
    settings = [dict.fromkeys(TEXTS, neurons) for _, neurons in plan[:3]]
    one_batch = continuation_fidelities(tiny_gated, prompts, settings, vocab, 3)
    assert one_batch == [continuation_fidelity(tiny_gated, prompts, s, vocab, 3) for s in settings]


def _experiment(model, tmp_path=None, **options):
    tokens = {lang: tokenize(model, texts) for lang, texts in TEXTS.items()}
    sets = {
        "en": NeuronSet({"ffn": [[0, 1], [1, 7]], "attn_v": [[1, 3]]}),
        "de": NeuronSet({"ffn": [[1, 2]], "attn_q": [[0, 9]]}),
    }
    categories = {
        lang: np.random.default_rng(1).choice([ENGLISH, INPUT, OTHER], model.cfg.d_vocab).astype(np.int8)
        for lang in TEXTS
    }
    opts = DeactivationOptions(**{"seeds": 2, "prompt_tokens": 4, "new_tokens": 3, "groups": GROUPS, **options})
    memo = MeasureMemo(tmp_path / "parts.json" if tmp_path else None)
    return run_deactivation(model, tokens, sets, categories, opts, memo=memo), sets


def test_experiment_structure_and_round_trip(tiny_gated):
    result, sets = _experiment(tiny_gated)
    assert result.own["all"]["en"] is result.cross["en"]["en"]
    assert result.set_sizes["all"] == {"en": 3, "de": 2}
    assert len(result.random["all"]["de"]) == 2
    assert result.baseline["en"].continuation_fidelity is not None
    assert result.cross_matrix().shape == (2, 2)
    table = result.settings_table()
    assert {r["setting"] for r in table} >= {"language-specific · all", "random · all", "random · generation"}
    assert DeactivationResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    # Switching off nothing (an empty group) is the baseline, not a new measurement.
    assert result.own["task_ffn"]["en"].loss == result.baseline["en"].loss


def test_an_interrupted_experiment_resumes_from_its_checkpoint(tiny_gated, tmp_path, monkeypatch):
    first, _ = _experiment(tiny_gated, tmp_path)

    def must_not_measure(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(deact, "measure_many", must_not_measure)
    monkeypatch.setattr(measures_module, "greedy", must_not_measure)
    again, _ = _experiment(tiny_gated, tmp_path)
    assert again.to_dict() == first.to_dict()


def test_ablate_job_writes_results_and_report(tmp_path):
    options = ablate.Options(
        documents=3, seeds=2, sets=("plnd", "exclusive"), groups=("all", "generation"), new_tokens=3
    )
    report = run(
        RunOptions(model="tiny", languages=("en", "de", "zh")),
        {"plnd": plnd.Options(documents=4, value=0.1), "ablate": options},
        tmp_path / "run",
        show_progress=False,
    )
    result = AblationResult.load(tmp_path / "run")
    assert list(result.experiments) == ["plnd", "exclusive"] and result.languages == ["en", "de", "zh"]
    shared = plnd.Result.load(tmp_path / "run").shared()
    for kind, experiment in result.experiments.items():
        assert experiment.settings["neuron_sets"] == kind
        assert all(len(experiment.random[g]["de"]) == 2 for g in experiment.random)
    # Both kinds share one baseline; the exclusive sets are the plnd sets minus the shared neurons.
    assert result.experiments["plnd"].baseline == result.experiments["exclusive"].baseline
    sizes = {kind: e.set_sizes["all"] for kind, e in result.experiments.items()}
    assert all(sizes["exclusive"][lang] == sizes["plnd"][lang] - len(shared) for lang in sizes["plnd"])
    rows = result.comparison("loss")
    assert len(rows) == 6 and {r["sets"] for r in rows} == {"plnd", "exclusive"}
    html = report.read_text()
    assert (
        "Deactivation: switching language-specific neurons off" in html
        and "with and without the shared neurons" in html
    )


def test_deactivation_settings_are_checked_early():
    with pytest.raises(WorkbenchError, match="not among the run's"):
        ablate.Options(languages=("fr",)).language_list(["en", "de"])
    with pytest.raises(WorkbenchError, match="--ablate-groups: unknown value 'middle'"):
        ablate.Options(groups=("all", "middle"))
    with pytest.raises(WorkbenchError, match="--ablate-sets: unknown value 'random'"):
        ablate.Options(sets=("random",))
