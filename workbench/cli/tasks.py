"""``workbench task``: the paper's downstream tasks under deactivation, or after fine-tuning."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.analyses import load_slice
from workbench.cli.flags import add_options, options_from
from workbench.errors import WorkbenchError
from workbench.runs.options import RunOptions

if TYPE_CHECKING:
    from workbench.interventions.tasks import Task


def cmd_task(args: argparse.Namespace) -> int:
    """``workbench task``: a task's score with PLND's sets switched off, or with fine-tuned deltas applied.

    The sets come from a PLND folder (``--sets-from``), the deltas from a finetune folder
    (``--deltas-from``).
    """
    from workbench.data.languages import parse_languages
    from workbench.interventions.tasks import get_task, load_examples, task_deactivation
    from workbench.models.loading import load_model, model_source
    from workbench.neurons.plnd_sets import PLNDResult

    task = get_task(args.task)
    if args.deltas_from:
        return _task_enhancement(args, task)
    if not args.sets_from:
        raise WorkbenchError("workbench task needs --sets-from (a PLND folder) or --deltas-from (a finetune folder).")
    plnd = PLNDResult.load(Path(args.sets_from))
    options = options_from(args, load_slice("ablate").Options, None)
    sets = plnd.named_sets(options.sets[0])
    langs = parse_languages(args.languages)
    missing = [lang for lang in langs if lang not in sets]
    if missing:
        raise WorkbenchError(
            f"{args.sets_from} has no neuron sets for {', '.join(missing)}; run workbench plnd for them."
        )
    examples = {lang: load_examples(task, lang, args.examples, args.file) for lang in langs}
    model = load_model(args.model, device=args.device)
    result = task_deactivation(model, task, examples, sets, options)
    result.update(
        model=model_source(model),
        sets_from=str(args.sets_from),
        neuron_sets=options.sets[0],
        examples={lang: len(v) for lang, v in examples.items()},
    )
    return _save_task_result(result, Path(args.out) / f"task-{task.name}.json")


def _task_enhancement(args: argparse.Namespace, task: Task) -> int:
    """``workbench task --deltas-from``: the task's scores with each fine-tuned delta applied."""
    from workbench.data.languages import parse_languages
    from workbench.interventions.enhancement import EnhancementResult
    from workbench.interventions.finetune import NeuronDelta
    from workbench.interventions.tasks import load_examples, task_enhancement
    from workbench.models.loading import load_model, model_source

    folder = Path(args.deltas_from)
    files = [folder / run.delta_file for run in EnhancementResult.load(folder).runs if run.delta_file]
    if not files:
        raise WorkbenchError(f"{folder} holds no trained deltas; run workbench finetune first.")
    langs = parse_languages(args.languages)
    examples = {lang: load_examples(task, lang, args.examples, args.file) for lang in langs}
    model = load_model(args.model, device=args.device)
    deltas = {path.stem: NeuronDelta.load(path) for path in files}
    for name, delta in deltas.items():
        try:
            delta.check_fits(model)
        except ValueError as exc:
            raise WorkbenchError(f"{name}: {exc} Pass the base model it was trained on with --model.") from None
    result = task_enhancement(model, task, examples, deltas)
    result.update(model=model_source(model), deltas_from=str(folder), examples={k: len(v) for k, v in examples.items()})
    return _save_task_result(result, Path(args.out) / f"task-{task.name}-finetune.json")


def _save_task_result(result: dict, path: Path) -> int:
    """Save a task table and print it (scores, drops or gains, one row per setting)."""
    from workbench.runs.results import save_json

    save_json(path, result)
    print(f"{result['task']} ({result['metric']}) baseline: {result['baseline']}")
    for row in result["rows"]:
        print("  ".join(f"{k}={v:+.3f}" if isinstance(v, float) else str(v) for k, v in row.items()))
    print(f"Saved: {path.resolve()}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``task``."""
    task = sub.add_parser(
        "task",
        help="the paper's tasks (XQuAD, MGSM, X-CSQA, XLSum) under deactivation or after fine-tuning "
        "(online or local files)",
    )
    task.add_argument("--task", required=True, choices=["xquad", "mgsm", "xcsqa", "xlsum"])
    task.add_argument(
        "--sets-from", default=None, help="deactivation: a results folder with plnd.json (workbench plnd)"
    )
    task.add_argument(
        "--deltas-from", default=None, help="enhancement: a results folder with finetune.json (workbench finetune)"
    )
    task.add_argument(
        "--file", default=None, help="local .jsonl with the dataset's fields (and 'language'); default: the hub"
    )
    task.add_argument("--languages", default="en,de,fr,es,zh,ru")
    task.add_argument("--examples", type=int, default=100, help="examples per language")
    task.add_argument("--model", default=RunOptions.model)
    add_options(task, load_slice("ablate").Options, only=("sets", "groups", "seeds", "understanding", "generation"))
    task.add_argument("--device", default=RunOptions.device)
    task.add_argument("--out", default="results/task")
    task.set_defaults(func=cmd_task)
