"""The ``workbench`` command line: the table of its commands, and ``main``.

The analysis commands are generated from the slices' ``Options`` ([`workbench.cli.analyses`][workbench.cli.analyses]):
``workbench <analysis> --<field>`` sets that analysis's options (those it requires take their
prefix, ``--plnd-documents``), and ``workbench run --analyses a,b`` takes every slice's options
with its prefix. A default lives in one place, the ``Options`` field. The other commands each live
in a small module of this package. Nothing here imports torch at the top, so ``--help`` and every
input error answer at once; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from workbench import __version__
from workbench.cli import analyses, compare, corpora, export, langid, models, reports, tasks, zoo
from workbench.errors import WorkbenchError

# In the order `workbench --help` lists them.
COMMANDS = (
    analyses,  # run, loss, lens, plnd, ablate, finetune, ffn, clt train|features|steer|graph|diff, graph, diff
    export,  # export: a finetune delta on its base, as a full state dict
    compare,  # clt-compare: transcoders of one model side by side
    tasks,  # task: the paper's downstream tasks
    models,  # models, prepare
    corpora,  # corpora
    langid,  # langid: accuracy of the token language labels
    zoo,  # zoo train|finetune|compare|list
    reports,  # report, figures
)


def build_parser() -> argparse.ArgumentParser:
    """The ``workbench`` parser: every command of ``COMMANDS``, with its flags."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Study how language models handle many languages (TransformerLens hooks).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in COMMANDS:
        commands.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default: the command line's) and return its exit status.

    A [`WorkbenchError`][workbench.errors.WorkbenchError] ends in one line on stderr and status 2;
    an interruption in a line saying that finished parts are kept, and status 130.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted; finished parts are saved, re-run the same command to resume.", file=sys.stderr)
        return 130
