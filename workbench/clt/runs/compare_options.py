"""Settings of ``workbench clt-compare``, and what it reads before anything heavy loads.

The transcoders to compare (``NAME=PATH[,PATH...]``), how many held-out verses and graph prompts
per language, and the graph prompts themselves, chosen from the shipped parallel set. This module
imports no torch: the command line checks names, paths and prompts at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from workbench.clt.graphs.options import GraphOptions
from workbench.data.prompts import ParallelPrompt, read_prompts
from workbench.errors import WorkbenchError
from workbench.runs.options import OptionError, Options, option

SPEC_FORM = "NAME=PATH (SAELens transcoders: NAME=PATH,PATH,... one folder per layer)"
"""How ``--transcoders`` is written, for help and refusals."""


@dataclass(frozen=True)
class CompareOptions(Options):
    """How much text and how many graphs each transcoder is measured on."""

    ANALYSIS: ClassVar[str] = "clt-compare"
    TITLE: ClassVar[str] = "clt-compare"

    heldout: int = option(50, "held-out verses per language (the ones clt-train measures on)", minimum=1)
    graph_prompts: int = option(
        2, "parallel prompts per language whose attribution graphs are scored (0: no graphs)", minimum=0
    )
    graph_tasks: tuple[str, ...] = option(
        (), "tasks of the parallel prompt set the graph prompts come from (default: all, in turn)"
    )
    graph_max_features: int = option(
        GraphOptions.max_features, "feature nodes per graph at most (visited by influence)", minimum=1
    )


@dataclass(frozen=True)
class TranscoderSpec:
    """One transcoder to compare: its name in the tables, and its folders.

    Attributes:
        name: Its name.
        paths: One folder, or several (SAELens transcoders, one per layer, in layer order).
    """

    name: str
    paths: tuple[str, ...]


def parse_specs(texts: list[str]) -> list[TranscoderSpec]:
    """The transcoders ``--transcoders`` names, each path checked to exist.

    Raises:
        WorkbenchError: None given, an item without a name or a path, a name that cannot name a
            file, a name given twice, or a path that is not there.
    """
    if not texts:
        raise WorkbenchError(f"Name the transcoders to compare: --transcoders {SPEC_FORM}, once per transcoder.")
    specs: list[TranscoderSpec] = []
    for text in texts:
        name, sep, rest = text.partition("=")
        paths = tuple(p.strip() for p in rest.split(",") if p.strip())
        if not sep or not name.strip() or not paths:
            raise WorkbenchError(f"--transcoders {text!r}: write {SPEC_FORM}.")
        specs.append(TranscoderSpec(name.strip(), paths))
    odd = [s.name for s in specs if not re.fullmatch(r"[\w.-]+", s.name)]
    if odd:
        raise WorkbenchError(
            f"Transcoder name(s) {', '.join(map(repr, odd))}: use letters, digits, '.', '-' and '_' (it names files)."
        )
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WorkbenchError(
            f"Transcoder name(s) {', '.join(twice)} given twice; give each --transcoders its own NAME."
        )
    missing = [p for s in specs for p in s.paths if not Path(p).exists()]
    if missing:
        raise WorkbenchError(
            f"No transcoder at {', '.join(missing)}; give the folder of a saved transcoder "
            "(ours, featflow's, circuit-tracer's, or SAELens folders, one per layer)."
        )
    return specs


def graph_prompts(options: CompareOptions, languages: list[str]) -> list[ParallelPrompt]:
    """The graph prompts: ``options.graph_prompts`` items of the shipped set, in each language that has them.

    Items are taken from the tasks in turn (the first item of each task, then the second, ...),
    so a few prompts still span several tasks; the same items in every language.

    Raises:
        OptionError: An unknown task, or graphs asked for but no language of ``languages`` in
            the prompt set (the message says to drop them with ``--graph-prompts 0``).
    """
    if options.graph_prompts == 0:
        return []
    prompts = read_prompts(None)
    tasks = list(options.graph_tasks) or prompts.task_names()
    unknown = [t for t in tasks if t not in prompts.tasks]
    if unknown:
        raise OptionError(f"--graph-tasks {', '.join(unknown)}: choose from {', '.join(prompts.task_names())}.")
    longest = max(len(prompts.tasks[t]) for t in tasks)
    turns = [(t, prompts.tasks[t][i]) for i in range(longest) for t in tasks if i < len(prompts.tasks[t])]
    chosen = [(t, item) for t, item in turns if any(lang in item for lang in languages)][: options.graph_prompts]
    if not chosen:
        have = sorted(set().union(*(prompts.languages_of(t) for t in tasks)))
        raise OptionError(
            f"The graph prompts are in {', '.join(have)}, none of --languages ({', '.join(languages)}); "
            "add one of them to --languages, or pass --graph-prompts 0 to compare without graphs."
        )
    return [
        ParallelPrompt(t, item["id"], lang, item[lang]["prompt"], item[lang]["answer"])
        for t, item in chosen
        for lang in languages
        if lang in item
    ]


__all__ = ["SPEC_FORM", "CompareOptions", "TranscoderSpec", "graph_prompts", "parse_specs"]
