"""The analysis commands, generated from the slices.

``workbench run`` (any analyses, every option prefixed), ``workbench <analysis>`` (its own options
bare), ``workbench <group> <action>`` and the aliases (``workbench graph``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

from workbench.analyses import ALIASES, DEFAULT_ANALYSES, REGISTRY, load_slice, with_requirements
from workbench.cli.flags import add_options, analyses_from, options_from, presets, split_list
from workbench.runs.options import RunOptions


def cmd_analyses(args: argparse.Namespace) -> int:
    """``workbench run`` and ``workbench <analysis>``: check every option, then run the job."""
    names = split_list(args.analyses) if args.analysis is None else [args.analysis]
    run_options = options_from(args, RunOptions, args.preset)
    analyses = analyses_from(args, names, args.preset)
    from workbench.runs.job import run  # the heavy part starts here, once the input is known to be good

    report = run(run_options, analyses, Path(args.out), show_progress=not args.quiet)
    print(f"Report: {cast(Path, report).resolve()}")  # a run with a folder writes its report there
    return 0


def _add_analysis_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str | None, command: str | None = None
) -> None:
    """``run`` (name None: every slice, prefixed) or one analysis (its own options unprefixed).

    The command is ``command`` (default: the analysis's name).
    """
    if name is None:
        parser = sub.add_parser("run", help="run the analyses and write results plus an HTML report")
        parser.add_argument(
            "--analyses",
            default=",".join(DEFAULT_ANALYSES),
            help=f"comma-separated, from: {', '.join(REGISTRY)} (default: %(default)s)",
        )
        members = list(REGISTRY)
    else:
        piece = load_slice(name)
        parser = sub.add_parser(command or name, help=(piece.__doc__ or name).strip().splitlines()[0])
        members = with_requirements([name])
    add_options(parser, RunOptions)
    for member in members:
        add_options(parser, load_slice(member).Options, short=member == name)
    parser.add_argument(
        "--preset",
        choices=presets(),
        default=None,
        help="'paper': the paper-sized run (13 languages, more documents, every layer group); "
        "'gemma-clt', 'gemma-clt-workshop': the transcoder study on Gemma 3 270M, full or workshop "
        "size (see README); options given still win",
    )
    folder = (name or "run").split("-")[0]  # a group's actions share a folder: clt features reads clt train's
    parser.add_argument(
        "--out", default=f"results/{folder}", help="output folder (re-running resumes; default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_analyses, analysis=name)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``run``, one command per analysis, one per group of analyses (``clt train``), and the aliases."""
    _add_analysis_command(sub, None)
    groups: dict[str, list[str]] = {}
    for name in REGISTRY:
        if "-" in name:
            groups.setdefault(name.split("-")[0], []).append(name)
        else:
            _add_analysis_command(sub, name)
    for group, names in groups.items():
        grouped = sub.add_parser(
            group,
            help=f"{group}: {', '.join(n.split('-', 1)[1] for n in names)} "
            f"(each action runs what it needs first, in one --out folder)",
        )
        actions = grouped.add_subparsers(dest=f"{group}_action", required=True, metavar="ACTION")
        for name in names:
            _add_analysis_command(actions, name, name.split("-", 1)[1])
    for alias, name in ALIASES.items():  # workbench graph = workbench clt graph (same --out folder)
        _add_analysis_command(sub, name, alias)
