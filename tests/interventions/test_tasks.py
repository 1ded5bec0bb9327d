import json

import pytest

from workbench.errors import WorkbenchError
from workbench.interventions.options import DeactivationOptions
from workbench.interventions.tasks import (
    TASKS,
    contains_answer,
    first_choice,
    get_task,
    last_number,
    load_examples,
    rouge_l,
    task_deactivation,
    task_score,
)
from workbench.neurons.sets import NeuronSet


def test_rouge_l_on_hand_made_pairs():
    # LCS of "the cat sat on the mat" / "the cat lay on the mat" = 5 words: P = R = 5/6.
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # 3 of 4 candidate words in order, reference of 6 words: P = 3/4, R = 3/6, F = 0.6.
    assert rouge_l("police arrested two men", "police arrested two suspects on monday") == pytest.approx(0.6)
    assert rouge_l("", "anything") == 0.0 and rouge_l("a b", "c d") == 0.0
    # Characters for Chinese: "我爱北京" vs "我爱上海" share 我爱: P = R = 2/4.
    assert rouge_l("我爱北京", "我爱上海", "zh") == pytest.approx(0.5)


def test_answer_extraction():
    assert contains_answer("It was in 1066, at Hastings.", ["Hastings", "Battle of Hastings"]) == 1.0
    assert contains_answer("I do not know", ["Hastings"]) == 0.0
    assert last_number("She has 3 apples, then 12 more: 1,250 in total") == 1250.0
    assert last_number("no digits") is None
    assert first_choice("The answer is C. because") == "C" and first_choice("none here") is None


def test_task_scores_on_a_hand_made_fixture():
    mgsm, xcsqa = get_task("mgsm"), get_task("xcsqa")
    assert mgsm.score("so 5 + 7 = 12", {"answer_number": 12}, "en") == 1.0
    assert mgsm.score("so 13", {"answer_number": 12}, "en") == 0.0
    example = {
        "question": {"stem": "Where do fish live?", "choices": {"label": ["A", "B"], "text": ["water", "trees"]}},
        "answerKey": "A",
    }
    assert xcsqa.prompt(example) == "Where do fish live?\nA. water\nB. trees\nAnswer:"
    assert xcsqa.score(" A", example, "en") == 1.0 and xcsqa.score(" B", example, "en") == 0.0
    assert get_task("xlsum").score(
        "the cat sat on the mat", {"summary": "the cat lay on the mat"}, "en"
    ) == pytest.approx(5 / 6)
    with pytest.raises(WorkbenchError, match="xquad"):
        get_task("squad")


def _write(tmp_path, rows):
    path = tmp_path / "xcsqa.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_local_files_load_offline_and_evaluate_under_masks(tmp_path, tiny_gated):
    rows = [
        {
            "language": lang,
            "answerKey": "A",
            "question": {"stem": stem, "choices": {"label": ["A", "B"], "text": ["x", "y"]}},
        }
        for lang, stem in [("en", "Which?"), ("en", "What?"), ("de", "Welche?"), ("de", "Was?")]
    ]
    path = _write(tmp_path, rows)
    task = TASKS["xcsqa"]
    examples = {lang: load_examples(task, lang, source=path) for lang in ("en", "de")}
    assert [len(v) for v in examples.values()] == [2, 2]
    score = task_score(tiny_gated, task, examples["en"], "en")
    assert 0.0 <= score <= 1.0
    sets = {lang: NeuronSet({"ffn": [[0, i], [1, i + 1]]}) for i, lang in enumerate(examples)}
    table = task_deactivation(
        tiny_gated, task, examples, sets, DeactivationOptions(groups=("all", "generation"), seeds=2)
    )
    assert [r["setting"] for r in table["rows"]] == [
        "language-specific · all",
        "random · all",
        "language-specific · generation",
        "random · generation",
    ]
    assert all({"en", "de", "Delta_Eng", "Delta_nEng", "Delta"} <= set(r) for r in table["rows"])
    with pytest.raises(WorkbenchError, match="No task file"):
        load_examples(task, "en", source=tmp_path / "missing.jsonl")
    with pytest.raises(WorkbenchError, match="No xcsqa examples for fr"):
        load_examples(task, "fr", source=path)


def test_hub_tasks_fail_fast_offline(monkeypatch):
    from workbench.errors import OfflineError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        load_examples(TASKS["mgsm"], "de")


def test_task_command_on_local_files(tmp_path, capsys):
    from workbench.analyses import plnd
    from workbench.cli import main
    from workbench.runs.job import run
    from workbench.runs.options import RunOptions
    from workbench.runs.results import load_json

    run(
        RunOptions(model="tiny", languages=("en", "de")),
        {"plnd": plnd.Options(documents=4, value=0.1)},
        tmp_path / "plnd",
        show_progress=False,
    )
    rows = [{"language": lang, "question": q, "answer_number": 4} for lang, q in [("en", "2 + 2?"), ("de", "2 + 2?")]]
    path = tmp_path / "mgsm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = [
        "task",
        "--task",
        "mgsm",
        "--file",
        str(path),
        "--sets-from",
        str(tmp_path / "plnd"),
        "--languages",
        "en,de",
        "--model",
        "tiny",
        "--ablate-seeds",
        "1",
        "--ablate-groups",
        "all,generation",
        "--out",
        str(tmp_path / "task"),
    ]
    assert main(args) == 0
    saved = load_json(tmp_path / "task" / "task-mgsm.json")
    assert saved["examples"] == {"en": 1, "de": 1} and len(saved["rows"]) == 4
    assert "Delta_nEng" in capsys.readouterr().out


def test_task_enhancement_equals_scoring_the_fine_tuned_model(tmp_path, tiny_gated):
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer

    from workbench.interventions.finetune import TrainOptions, train_neurons
    from workbench.interventions.tasks import task_enhancement

    task = TASKS["xlsum"]
    examples = {
        lang: [{"text": text, "summary": text[:12]}]
        for lang, text in [("en", "In the beginning was the word."), ("de", "Im Anfang war das Wort.")]
    }
    docs = [tiny_gated.to_tokens(ex["text"])[0] for exs in examples.values() for ex in exs] * 3
    delta, _ = train_neurons(
        tiny_gated, NeuronSet({"ffn": [[1, 2], [1, 5]], "attn_o": [[1, 4]]}), docs, TrainOptions(epochs=5, lr=5e-2)
    )
    delta.meta["target"] = "de"
    result = task_enhancement(tiny_gated, task, examples, {"de-language-6": delta})
    tuned = HookedTransformer(tiny_gated.cfg)
    tuned.load_state_dict(load_file(str(delta.export(tiny_gated, tmp_path / "full.safetensors"))))
    tuned.tokenizer = tiny_gated.tokenizer
    (row,) = result["rows"]
    for lang, exs in examples.items():
        assert row[lang] == pytest.approx(task_score(tuned, task, exs, lang) - result["baseline"][lang])
    assert row["other languages: mean gain"] is None  # only en and the target
