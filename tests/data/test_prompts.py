"""The shipped parallel prompts and their loader (workbench.data.prompts)."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest

from workbench.data.prompts import (
    ParallelPrompt,
    PromptFileError,
    PromptSet,
    UnknownTaskError,
    default_path,
    from_text,
    load,
    read_prompts,
)
from workbench.errors import UnknownLanguageError, WorkbenchError

CORE = ["en", "fr", "de", "zh", "ar", "ru"]
TASKS = ["antonym", "weekday", "month", "number", "bible"]
ARABIC = re.compile(r"[\u0600-\u06FF]")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")
ASCII_LETTER = re.compile(r"[A-Za-z]")


@pytest.fixture(scope="module")
def shipped() -> PromptSet:
    return PromptSet.load()


def _write(tmp_path, data) -> str:
    path = tmp_path / "prompts.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_shipped_file_loads_with_its_tasks_and_languages(shipped):
    assert default_path().is_file()
    assert shipped.task_names() == TASKS
    assert set(CORE) <= set(shipped.languages)
    raw = json.loads(default_path().read_text(encoding="utf-8"))
    assert isinstance(raw["about"], str) and raw["about"]
    assert raw["languages"] == shipped.languages
    assert [len(shipped.tasks[t]) for t in TASKS] == [4, 3, 3, 3, 3]


def test_every_item_has_the_core_languages_except_bible(shipped):
    for task in TASKS:
        for item in shipped.tasks[task]:
            if task != "bible":
                assert set(CORE) <= set(item), (task, item["id"])
        assert set(CORE) <= shipped.languages_of(task)


def test_prompts_and_answers_are_clean_strings(shipped):
    prompts = shipped.prompts()
    assert len(prompts) == sum(len(item) - 1 for items in shipped.tasks.values() for item in items)
    for p in prompts:
        assert isinstance(p, ParallelPrompt)
        assert p.prompt and p.prompt == p.prompt.rstrip(), p
        assert p.answer and p.answer == p.answer.strip(), p
        assert unicodedata.normalize("NFC", p.prompt + p.answer) == p.prompt + p.answer, p


def test_scripts_match_the_languages(shipped):
    for p in shipped.prompts(languages=["zh", "ar", "ru"]):
        if p.language == "zh":
            assert not ASCII_LETTER.search(p.prompt + p.answer), p
        elif p.language == "ar":
            assert ARABIC.search(p.prompt) and ARABIC.search(p.answer), p
        else:
            assert CYRILLIC.search(p.prompt) and CYRILLIC.search(p.answer), p


def test_prompts_selects_tasks_and_languages_in_order(shipped):
    got = shipped.prompts(["antonym"], ["fr", "en"])
    assert [(p.item, p.language) for p in got[:2]] == [("small_big", "fr"), ("small_big", "en")]
    assert len(got) == 8
    assert got[1].prompt == 'The opposite of "small" is "' and got[1].answer == "big"


def test_continuation_adds_the_space_the_language_needs(shipped):
    by_key = {(p.task, p.item, p.language): p for p in shipped.prompts()}
    # No space after an opening quote, nor in Chinese; one after a list's comma.
    assert by_key["antonym", "small_big", "en"].continuation == "big"
    assert by_key["weekday", "mon_tue_wed", "en"].continuation == " Thursday"
    assert by_key["weekday", "mon_tue_wed", "zh"].continuation == "四"
    assert by_key["bible", "john_1_1", "ru"].continuation == " Слово"


def test_items_may_lack_languages(tmp_path):
    data = {
        "tasks": {
            "t": [{"id": "a", "en": {"prompt": "x", "answer": "y"}}, {"id": "b", "fr": {"prompt": "u", "answer": "v"}}]
        }
    }
    prompts = load(_write(tmp_path, data))
    assert prompts.languages == ["en", "fr"]
    got = prompts.prompts(["t"], ["en", "fr"])
    assert [(p.item, p.language) for p in got] == [("a", "en"), ("b", "fr")]


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(PromptFileError, match="not found.*Check the path"):
        PromptSet.load(tmp_path / "nope.json")


def test_not_json_names_the_fix(tmp_path):
    with pytest.raises(PromptFileError, match="not a UTF-8 JSON file.*Fix it"):
        PromptSet.load(_write(tmp_path, "{not json"))


def test_missing_tasks_names_the_fix(tmp_path):
    with pytest.raises(PromptFileError, match='no "tasks".*A prompt file is'):
        PromptSet.load(_write(tmp_path, {"languages": ["en"]}))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"answer": "y"}, 'give both "prompt" and "answer"'),
        ({"prompt": "x"}, 'give both "prompt" and "answer"'),
        ({"prompt": "  ", "answer": "y"}, "prompt.*is empty; write the text"),
        ({"prompt": "x", "answer": " y"}, "without surrounding spaces"),
    ],
)
def test_bad_items_name_the_fix(tmp_path, entry, message):
    with pytest.raises(PromptFileError, match=message):
        PromptSet.load(_write(tmp_path, {"tasks": {"t": [{"id": "a", "en": entry}]}}))


def test_undeclared_language_names_the_fix(tmp_path):
    item = {"id": "a", "ch": {"prompt": "x", "answer": "y"}}
    data = {"languages": ["en"], "tasks": {"t": [item]}}
    with pytest.raises(PromptFileError, match='missing from "languages".*add them'):
        PromptSet.load(_write(tmp_path, data))


def test_unknown_task_lists_the_known_ones(shipped):
    with pytest.raises(UnknownTaskError, match="Choose among: antonym, weekday, month, number"):
        shipped.prompts(["antonyms"], ["en"])
    with pytest.raises(UnknownTaskError):
        shipped.languages_of("nope")


def test_unknown_language_lists_the_file_languages(tmp_path):
    data = {
        "tasks": {
            "t": [{"id": "a", "en": {"prompt": "x", "answer": "y"}}],
            "u": [{"id": "a", "fr": {"prompt": "x", "answer": "y"}}],
        }
    }
    prompts = load(_write(tmp_path, data))
    known = r"en \(English\), fr \(French\)"
    with pytest.raises(UnknownLanguageError, match=rf"language\(s\) fr\. Choose among.*{known}"):
        prompts.prompts(["t"], ["en", "fr"])
    assert issubclass(UnknownLanguageError, WorkbenchError)


def test_from_text_splits_lines_and_skips_blank_ones(tmp_path):
    prompts = from_text("The capital of France is\n\n  \nDas Gegenteil von klein ist\r\n", "en")
    assert prompts.task_names() == ["custom"] and prompts.languages == ["en"]
    got = prompts.prompts(["custom"], ["en"])
    assert [(p.item, p.prompt, p.answer) for p in got] == [
        ("1", "The capital of France is", ""),
        ("2", "Das Gegenteil von klein ist", ""),
    ]
    assert PromptSet.from_text("a\nb").languages == ["custom"]
    with pytest.raises(PromptFileError, match="one prompt per line"):
        from_text("\n \n")
    path = tmp_path / "mine.txt"
    path.write_text("one\ntwo\n", encoding="utf-8")
    assert len(read_prompts(path, "en").prompts()) == 2
    assert read_prompts().task_names() == TASKS
