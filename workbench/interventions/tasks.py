"""The paper's tasks (MWork Tables 2-5): XQuAD, MGSM, X-CSQA and XLSum, with prompts and metrics.

Loaded through ``datasets`` from the hub when online, or from a local ``.jsonl`` file with the
same fields (one example per line). Each task answers with greedy generation, under whatever
neuron masks are active, and is scored by its metric:

========  ==============  =====================================  ===============================
task      ability         prompt                                 metric
========  ==============  =====================================  ===============================
xquad     understanding   context, question, "Answer:"           accuracy: a gold answer appears
                                                                  in the generated text
mgsm      reasoning       question, "Answer (a number):"         accuracy: the last number
                                                                  generated equals the answer
xcsqa     knowledge       question, lettered choices, "Answer:"  accuracy: the first letter A-E
                                                                  generated is the answer key
xlsum     generation      article, "Summary:"                    ROUGE-L F1 (characters for
                                                                  zh/ja/ko, words otherwise)
========  ==============  =====================================  ===============================

The prompts are plain completions (the paper's exact instructions are in its Appendix D, which
we do not reproduce); they suit base models. A 270M base model scores near zero on most of these:
the tasks are here for the paper's 7B models, online, with a GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from workbench.errors import WorkbenchError
from workbench.interventions.deactivation_results import paper_deltas
from workbench.interventions.finetune import NeuronDelta
from workbench.interventions.layer_groups import LayerGroups
from workbench.interventions.measures import random_like
from workbench.interventions.options import DeactivationOptions
from workbench.lens.readout import greedy
from workbench.models.model import Model
from workbench.neurons.masking import switched_off
from workbench.neurons.sets import NeuronDims, NeuronSet

CHARACTER_LANGUAGES = ("zh", "ja", "ko", "th")
"""Languages ROUGE-L counts in characters rather than words."""


@dataclass(frozen=True)
class Task:
    """One of the paper's tasks: where its examples are, how it prompts and how it scores an answer.

    Attributes:
        name: The task's name (``--task``).
        ability: What it tests (understanding, reasoning, knowledge, generation).
        hub: Its dataset on the hub.
        configs: Per language, the dataset's config.
        split: The dataset's split.
        metric: What the score is (``accuracy``, ``rougeL``).
        max_new_tokens: Greedy tokens generated per answer.
        prompt: An example's prompt.
        score: ``(generated text, example, language) -> score``.
    """

    name: str
    ability: str
    hub: str
    configs: dict[str, str]  # language -> dataset config
    split: str
    metric: str
    max_new_tokens: int
    prompt: Callable[[dict], str]
    score: Callable[[str, dict, str], float]


# ----------------------------------------------------------------------------- metrics


def normalise(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed (for answer matching)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def contains_answer(generated: str, answers: list[str]) -> float:
    """1.0 when any gold answer (normalised) appears in the generated text."""
    text = normalise(generated)
    return float(any(normalise(a) and normalise(a) in text for a in answers))


def last_number(text: str) -> float | None:
    """The last number in a text (thousands separators dropped), or None."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def first_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The first standalone choice letter in a text, or None."""
    match = re.search(rf"\b([{letters}])\b", text)
    return match.group(1) if match else None


def rouge_l(candidate: str, reference: str, language: str = "en") -> float:
    """ROUGE-L F1: longest common subsequence of words (characters for zh/ja/ko/th)."""
    split = (
        (lambda s: [c for c in s if not c.isspace()])
        if language in CHARACTER_LANGUAGES
        else (lambda s: normalise(s).split())
    )
    a, b = split(candidate), split(reference)
    if not a or not b:
        return 0.0
    lcs = _lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


# ----------------------------------------------------------------------------- the four tasks


def _xquad_prompt(ex: dict) -> str:
    return f"{ex['context']}\nQuestion: {ex['question']}\nAnswer:"


def _mgsm_prompt(ex: dict) -> str:
    return f"Question: {ex['question']}\nAnswer (a number):"


def _xcsqa_prompt(ex: dict) -> str:
    q = ex["question"]
    choices = "\n".join(f"{label}. {text}" for label, text in zip(q["choices"]["label"], q["choices"]["text"]))
    return f"{q['stem']}\n{choices}\nAnswer:"


def _xlsum_prompt(ex: dict) -> str:
    return f"{ex['text']}\nSummary:"


def _mgsm_score(generated: str, ex: dict, language: str) -> float:
    number = last_number(generated)
    return float(number is not None and abs(number - float(ex["answer_number"])) < 1e-6)


_XQUAD_LANGS = ("en", "de", "es", "ru", "zh", "ar", "hi", "vi", "tr", "th", "el", "ro")
_MGSM_LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "sw", "th", "te", "bn")
_XCSQA_LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "it", "pt", "ar", "hi", "sw", "vi", "pl", "nl", "ur")
_XLSUM_NAMES = {
    "en": "english",
    "fr": "french",
    "es": "spanish",
    "ru": "russian",
    "zh": "chinese_simplified",
    "ja": "japanese",
    "ar": "arabic",
    "hi": "hindi",
    "sw": "swahili",
    "pt": "portuguese",
    "ko": "korean",
    "vi": "vietnamese",
    "id": "indonesian",
    "tr": "turkish",
}

TASKS: dict[str, Task] = {
    "xquad": Task(
        "xquad",
        "understanding",
        "google/xquad",
        {lang: f"xquad.{lang}" for lang in _XQUAD_LANGS},
        "validation",
        "accuracy",
        24,
        _xquad_prompt,
        lambda g, ex, lang: contains_answer(g, list(ex["answers"]["text"])),
    ),
    "mgsm": Task(
        "mgsm",
        "reasoning",
        "juletxara/mgsm",
        {lang: lang for lang in _MGSM_LANGS},
        "test",
        "accuracy",
        48,
        _mgsm_prompt,
        _mgsm_score,
    ),
    "xcsqa": Task(
        "xcsqa",
        "knowledge",
        "INK-USC/xcsr",
        {lang: f"X-CSQA-{lang}" for lang in _XCSQA_LANGS},
        "validation",
        "accuracy",
        4,
        _xcsqa_prompt,
        lambda g, ex, lang: float(first_choice(g) == ex["answerKey"]),
    ),
    "xlsum": Task(
        "xlsum",
        "generation",
        "csebuetnlp/xlsum",
        _XLSUM_NAMES,
        "test",
        "rougeL",
        64,
        _xlsum_prompt,
        lambda g, ex, lang: rouge_l(g, ex["summary"], lang),
    ),
}


def get_task(name: str) -> Task:
    """The task named ``name``, or an error that lists the tasks."""
    if name not in TASKS:
        raise WorkbenchError(f"Unknown task {name!r}; choose from {', '.join(TASKS)}.")
    return TASKS[name]


def load_examples(task: Task, language: str, n: int | None = None, source: str | Path | None = None) -> list[dict]:
    """Examples of ``task`` in ``language``, the first ``n`` (all for None).

    From a local ``.jsonl`` file (``source``) with the hub's fields, else from the hub (online, or
    already in the ``datasets`` cache).
    """
    if source is not None:
        path = Path(source)
        if not path.is_file():
            raise WorkbenchError(f"No task file at {path}; give a .jsonl file with the {task.name} fields.")
        with path.open(encoding="utf-8") as fh:
            examples = [json.loads(line) for line in fh if line.strip()]
        examples = [ex for ex in examples if ex.get("language", language) == language]
    else:
        if language not in task.configs:
            raise WorkbenchError(f"{task.name} has no {language}; it has {', '.join(task.configs)}.")
        from datasets import load_dataset

        from workbench.models.hub import require_hub

        require_hub(f"the {task.name} dataset ({task.hub})")
        rows = load_dataset(task.hub, task.configs[language], split=task.split)
        examples = cast(list[dict], list(rows))  # a split's rows are dicts
    if not examples:
        raise WorkbenchError(f"No {task.name} examples for {language}.")
    return examples[:n] if n else examples


@torch.no_grad()
def task_score(model: Model, task: Task, examples: list[dict], language: str, max_prompt_tokens: int = 1024) -> float:
    """Mean score of greedy answers (with whatever neuron masks are active)."""
    device = next(model.parameters()).device
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise WorkbenchError("The model has no tokenizer to read its answers with.")
    scores = []
    for ex in examples:
        tokens = model.to_tokens(task.prompt(ex))[:, -max_prompt_tokens:].to(device)  # keep the question's end
        generated = greedy(model, tokens, task.max_new_tokens)[0][0]
        answer = cast(str, tokenizer.decode(generated, skip_special_tokens=True))  # one sequence, one string
        scores.append(task.score(answer, ex, language))
    return sum(scores) / len(scores)


def task_deactivation(
    model: Model,
    task: Task,
    examples: dict[str, list[dict]],
    sets: dict[str, NeuronSet],
    options: DeactivationOptions | None = None,
) -> dict[str, Any]:
    """Tables 2-5 for a task: every language's score drop with its own neurons or random ones switched off.

    Per layer group: the language's own set in it, or as many random neurons (the mean over
    ``options.seeds``); with Delta_Eng, Delta_nEng and Delta.
    """
    options = options or DeactivationOptions()
    dims = NeuronDims.of(model)
    groups = LayerGroups.default(dims.n_layers, options.understanding, options.generation)
    baseline = {lang: task_score(model, task, exs, lang) for lang, exs in examples.items()}

    def drop(lang: str, neurons: NeuronSet) -> float:
        with switched_off(model, neurons):
            return baseline[lang] - task_score(model, task, examples[lang], lang)

    rows = []
    for group in options.groups:
        own = {lang: groups.restrict(sets[lang], group) for lang in examples}
        for kind in ("language-specific", "random"):
            if kind == "language-specific":
                deltas = {lang: drop(lang, own[lang]) for lang in examples}
            else:
                deltas = {
                    lang: sum(drop(lang, random_like(own[lang], dims, seed)) for seed in range(options.seeds))
                    / options.seeds
                    for lang in examples
                }
            rows.append({"setting": f"{kind} · {group}", **deltas, **paper_deltas(deltas)})
    return {
        "task": task.name,
        "metric": task.metric,
        "baseline": baseline,
        "rows": rows,
        "layer_groups": {"understanding": groups.understanding, "generation": groups.generation},
    }


def task_enhancement(
    model: Model, task: Task, examples: dict[str, list[dict]], deltas: dict[str, NeuronDelta]
) -> dict[str, Any]:
    """MWork Figure 4 / Table 6 on a task: every language's gain with each fine-tuned delta applied.

    ``deltas``: [`NeuronDelta`][workbench.interventions.finetune.NeuronDelta]s by label; a gain is
    the score with the delta over the base model's.
    """
    baseline = {lang: task_score(model, task, exs, lang) for lang, exs in examples.items()}
    rows = []
    for label, delta in deltas.items():
        with delta.applied(model):
            gains = {lang: task_score(model, task, exs, lang) - baseline[lang] for lang, exs in examples.items()}
        others = [v for lang, v in gains.items() if lang not in ("en", delta.meta.get("target"))]
        rows.append(
            {"run": label, **gains, "other languages: mean gain": sum(others) / len(others) if others else None}
        )
    return {"task": task.name, "metric": task.metric, "baseline": baseline, "rows": rows}
