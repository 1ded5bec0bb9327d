r"""Parallel prompts: the same short prompt in several languages, with the word that should follow.

Attribution graphs are compared across languages on prompts that ask for the same thing in each
language (an antonym, the next weekday, ...). The workbench ships such a set in
``parallel.json`` next to this module; [`PromptSet.load`][workbench.data.prompts.PromptSet.load]
reads it, or a user's file of the same shape::

    {"about": "...", "languages": ["en", "fr"],
     "tasks": {"antonym": [{"id": "small_big",
                            "en": {"prompt": "The opposite of \"small\" is \"",
                                   "answer": "big"},
                            "fr": {"prompt": "Le contraire de \"petit\" est \"",
                                   "answer": "grand"}}]}}

An item may lack languages. [`PromptSet.from_text`][workbench.data.prompts.PromptSet.from_text]
turns a plain text file (one prompt per line) into a set with one task, ``custom``, whose answers
are empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from workbench.data.languages import language_name
from workbench.errors import UnknownLanguageError, WorkbenchError

__all__ = [
    "CUSTOM_TASK",
    "ParallelPrompt",
    "PromptFileError",
    "PromptSet",
    "UnknownTaskError",
    "default_path",
    "from_text",
    "load",
    "read_prompts",
]

CUSTOM_TASK = "custom"
# Item keys that are not language codes.
_ITEM_KEYS = ("id", "note")
# Scripts written without spaces between words: the answer follows the prompt directly.
_NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my"})
# A prompt ending in one of these is followed directly by the answer (an opening quote or bracket).
_OPENERS = "\"'«“„‘([{"
_FORMAT = (
    'A prompt file is a JSON object {"languages": [...], "tasks": {TASK: [ITEM, ...]}} where each '
    'ITEM is {"id": "...", LANGUAGE: {"prompt": "...", "answer": "..."}, ...}.'
)


class PromptFileError(WorkbenchError, ValueError):
    """A prompt file that is missing, not JSON, or not of the parallel-prompt shape."""


class UnknownTaskError(WorkbenchError, ValueError):
    """A task name the prompt set does not have."""


@dataclass(frozen=True)
class ParallelPrompt:
    """One prompt of one item in one language, with the answer expected to follow it."""

    task: str
    item: str
    language: str
    prompt: str
    answer: str

    @property
    def continuation(self) -> str:
        """The answer as the text that follows the prompt.

        With a leading space where the language writes spaces between words and the prompt does
        not end in an opening quote. This is what a target token should be made of (e.g.
        ``" big"``, ``"大"``).
        """
        if not self.answer or self.language in _NO_SPACE_LANGUAGES:
            return self.answer
        if not self.prompt or self.prompt[-1].isspace() or self.prompt[-1] in _OPENERS:
            return self.answer
        return " " + self.answer


@dataclass
class PromptSet:
    """Tasks of parallel items: task -> list of ``{"id": ..., language: {"prompt", "answer"}}``."""

    tasks: dict[str, list[dict]]
    languages: list[str]

    @classmethod
    def load(cls, path: Path | str | None = None) -> PromptSet:
        """The prompt set in ``path`` (a JSON file), or the one shipped with the workbench."""
        path = Path(path) if path is not None else default_path()
        data = _read_json(path)
        tasks = _check_tasks(data, path)
        languages = _check_languages(data, tasks, path)
        return cls(tasks=tasks, languages=languages)

    @classmethod
    def from_text(cls, text: str, language: str = "custom") -> PromptSet:
        """One prompt per non-blank line of ``text`` (answers empty), as task ``custom``.

        Its items are ``"1"``, ``"2"``, ..., so a plain text file of prompts can stand in for a
        JSON set.

        Raises:
            PromptFileError: The text has no prompt.
        """
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise PromptFileError("The text has no prompts: write one prompt per line.")
        items = [{"id": str(i), language: {"prompt": line, "answer": ""}} for i, line in enumerate(lines, start=1)]
        return cls(tasks={CUSTOM_TASK: items}, languages=[language])

    def task_names(self) -> list[str]:
        """The tasks, in file order."""
        return list(self.tasks)

    def languages_of(self, task: str) -> set[str]:
        """The languages at least one item of ``task`` has."""
        self._check_task_names([task])
        return {lang for item in self.tasks[task] for lang in _item_languages(item)}

    def prompts(self, tasks: list[str] | None = None, languages: list[str] | None = None) -> list[ParallelPrompt]:
        """Every item of ``tasks`` in every one of ``languages`` that the item has.

        Task by task, item by item, languages in the order asked.

        Args:
            tasks: The tasks (all when None).
            languages: The languages (all of the set's when None).

        Raises:
            UnknownTaskError: A task is not in the set.
            UnknownLanguageError: No item of ``tasks`` has one of ``languages``.
        """
        tasks = self.task_names() if tasks is None else list(tasks)
        self._check_task_names(tasks)
        languages = list(self.languages) if languages is None else list(languages)
        self._check_languages_for(tasks, languages)
        return [
            ParallelPrompt(task, item["id"], lang, item[lang]["prompt"], item[lang]["answer"])
            for task in tasks
            for item in self.tasks[task]
            for lang in languages
            if lang in item
        ]

    def _check_task_names(self, tasks: list[str]) -> None:
        """Raise [`UnknownTaskError`][workbench.data.prompts.UnknownTaskError] for a task not in the set."""
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise UnknownTaskError(
                f"Unknown task(s) {', '.join(map(repr, unknown))}. Choose among: {', '.join(self.task_names())}."
            )

    def _check_languages_for(self, tasks: list[str], languages: list[str]) -> None:
        """Raise [`UnknownLanguageError`][workbench.errors.UnknownLanguageError] for a language ``tasks`` lack."""
        have = set().union(*(self.languages_of(t) for t in tasks)) if tasks else set()
        missing = [lang for lang in languages if lang not in have]
        if missing:
            listing = ", ".join(f"{c} ({language_name(c)})" for c in self.languages)
            raise UnknownLanguageError(
                f"No item of task(s) {', '.join(tasks)} has language(s) {', '.join(missing)}. "
                f"Choose among the prompt set's languages: {listing}."
            )


def default_path() -> Path:
    """The prompt file shipped with the workbench (package data)."""
    return Path(str(files("workbench.data.prompts").joinpath("parallel.json")))


def read_prompts(path: Path | str | None = None, language: str = "custom") -> PromptSet:
    """A prompt set from a ``.json`` file, or any other text file with one prompt per line.

    A ``.json`` file is read by [`PromptSet.load`][workbench.data.prompts.PromptSet.load], any
    other by [`PromptSet.from_text`][workbench.data.prompts.PromptSet.from_text] (its prompts in
    ``language``); None gives the shipped set.

    Raises:
        PromptFileError: The file is missing, or not of the parallel-prompt shape.
    """
    if path is None or Path(path).suffix.lower() == ".json":
        return PromptSet.load(path)
    path = Path(path)
    if not path.is_file():
        raise _not_found(path)
    return PromptSet.from_text(path.read_text(encoding="utf-8"), language)


load = PromptSet.load
from_text = PromptSet.from_text


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``, or a [`PromptFileError`][workbench.data.prompts.PromptFileError] with the fix."""
    if not path.is_file():
        raise _not_found(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PromptFileError(
            f"{path} is not a UTF-8 JSON file ({exc}). Fix it, or give a .txt file with one prompt per line."
        ) from exc
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise PromptFileError(f"{path} holds a JSON {kind}, not an object. {_FORMAT}")
    return data


def _check_tasks(data: dict, path: Path) -> dict[str, list[dict]]:
    """The file's ``tasks``, each item checked (see [`_check_item`][workbench.data.prompts._check_item])."""
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise PromptFileError(f'{path} has no "tasks" object (or it is empty). {_FORMAT}')
    for task, items in tasks.items():
        if not isinstance(items, list) or not items:
            raise PromptFileError(f"{path}: task {task!r} must be a non-empty list. {_FORMAT}")
        for index, item in enumerate(items):
            _check_item(item, f"{path}: task {task!r}, item {index + 1}")
        ids = [item["id"] for item in items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise PromptFileError(f"{path}: task {task!r} repeats item id(s) {duplicates}; give each item its own id.")
    return tasks


def _check_item(item: object, where: str) -> None:
    """An item must have a string id and, per language, a non-empty prompt and a bare answer."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise PromptFileError(f'{where}: an item needs a non-empty string "id". {_FORMAT}')
    where = f"{where} ({item['id']!r})"
    languages = _item_languages(item)
    if not languages:
        raise PromptFileError(f'{where} has no language: add e.g. "en": {{"prompt": "...", "answer": "..."}}.')
    for lang in languages:
        entry = item[lang]
        if not isinstance(entry, dict) or "prompt" not in entry or "answer" not in entry:
            raise PromptFileError(f'{where}, {lang}: give both "prompt" and "answer" (the answer may be "").')
        prompt, answer = entry["prompt"], entry["answer"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f'{where}, {lang}: the "prompt" is empty; write the text to continue.')
        if not isinstance(answer, str):
            raise PromptFileError(f'{where}, {lang}: the "answer" must be a string (may be "").')
        if answer != answer.strip():
            raise PromptFileError(
                f'{where}, {lang}: write the "answer" {answer!r} without surrounding spaces; '
                "ParallelPrompt.continuation adds the space the language needs."
            )


def _check_languages(data: dict, tasks: dict[str, list[dict]], path: Path) -> list[str]:
    """The declared ``languages`` (every item language must be among them), or those found."""
    items = [item for task_items in tasks.values() for item in task_items]
    found = sorted({lang for item in items for lang in _item_languages(item)})
    declared = data.get("languages")
    if declared is None:
        return found
    if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
        raise PromptFileError(f'{path}: "languages" must be a list of language codes, e.g. ["en", "fr"].')
    undeclared = [c for c in found if c not in declared]
    if undeclared:
        raise PromptFileError(
            f'{path}: items use language(s) {", ".join(undeclared)} missing from "languages" '
            f"({', '.join(declared)}); add them there or fix the codes."
        )
    return list(declared)


def _not_found(path: Path) -> PromptFileError:
    """The error for a prompt file that is not there."""
    return PromptFileError(f"Prompt file not found: {path}. Check the path, or omit it for the shipped prompts.")


def _item_languages(item: dict) -> list[str]:
    """The language codes of an item: its keys other than ``id`` and ``note``."""
    return [key for key in item if key not in _ITEM_KEYS]
