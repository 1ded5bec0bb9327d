"""``workbench clt-compare``: several transcoders of one model measured side by side, as a table and a page."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.flags import add_options, options_from
from workbench.clt.runs.compare_options import SPEC_FORM, CompareOptions, graph_prompts, parse_specs
from workbench.data.corpus import open_corpus
from workbench.errors import WorkbenchError
from workbench.models.specs import check_spec
from workbench.runs.options import RunOptions

_RUN_FLAGS = ("model", "corpus", "languages", "translations", "batch_tokens", "on_too_long", "seed", "device", "dtype")
_SHOWN = (
    "transcoder",
    "worst FVU",
    "mean L0",
    "gap recovered (mean)",
    "gap recovered (worst language)",
    "graph replacement",
    "graph completeness",
)


def cmd_compare(args: argparse.Namespace) -> int:
    """Check every input (names, paths, model, corpus, prompts), then load and measure each transcoder."""
    run = options_from(args, RunOptions, None)
    options = options_from(args, CompareOptions, None)
    specs = parse_specs(args.transcoders or [])
    prompts = graph_prompts(options, list(run.languages))
    check_spec(run.model)
    corpus = open_corpus(run.corpus, run.translation_map() or None)
    corpus.check_languages(list(run.languages))
    from workbench.clt.graphs.attribution import check_hooked  # the heavy part starts here
    from workbench.clt.runs.compare import NAME, compare, load_checked
    from workbench.clt.runs.compare_report import write_page
    from workbench.models.model import model_source
    from workbench.runs.job import load_run_model
    from workbench.runs.store import Store

    model = load_run_model(run.model, run.device, run.dtype)
    name = model_source(model).get("name", run.model)
    if prompts:
        try:
            check_hooked(model)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{exc} Or compare the transcoders without graphs: --graph-prompts 0.") from None
    for spec in specs:  # every transcoder read and checked before the first is measured
        load_checked(spec, model, name)
    out = Path(args.out)
    store = Store(out, run, {NAME: options.fingerprint(run.context())}, show_progress=not args.quiet)
    result = compare(model, corpus, lambda spec: load_checked(spec, model, name), specs, prompts, options, store)
    path = result.save(out)
    page = write_page(result, out)
    _print_table(result.summary_table())
    print(f"Wrote {path.resolve()} and {page.resolve()}.")
    return 0


def _print_table(rows: list[dict]) -> None:
    """The summary's main columns as aligned text."""
    cells = [[_cell(row[k]) for k in _SHOWN] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(_SHOWN)]
    print("  ".join(k.ljust(w) for k, w in zip(_SHOWN, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``clt-compare``."""
    parser = sub.add_parser(
        "clt-compare",
        help="measure several transcoders of one model side by side (FVU, L0, dead, spliced loss, "
        "zero-ablation gap recovered, graph scores): a table, compare.json and compare.html",
    )
    parser.add_argument(
        "--transcoders",
        action="append",
        metavar="NAME=PATH",
        help=f"a transcoder to compare, {SPEC_FORM}; give it once per transcoder (any format clt-train --load reads)",
    )
    add_options(parser, RunOptions, only=_RUN_FLAGS)
    add_options(parser, CompareOptions, short=True)
    parser.add_argument(
        "--out", default="results/compare", help="output folder (re-running resumes; default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_compare)
