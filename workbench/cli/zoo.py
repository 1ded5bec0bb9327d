"""``workbench zoo``: train, fine-tune, list and compare the zoo's small models."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from workbench.analyses import REGISTRY, load_slice
from workbench.cli.flags import add_options, analyses_from, options_from, split_list
from workbench.errors import WorkbenchError
from workbench.runs.options import RunOptions

if TYPE_CHECKING:
    from workbench.zoo.options import ZooOptions

_ZOO_HELP = "zoo folder (default: $WORKBENCH_ZOO, else $WORKBENCH_CACHE/zoo)"


def cmd_zoo_train(args: argparse.Namespace) -> int:
    """``workbench zoo train NAME`` or ``--preset``: train (or resume) zoo models, one after another."""
    from workbench.zoo.options import ZooOptions
    from workbench.zoo.presets import PRESETS

    if bool(args.name) == bool(args.preset):
        raise WorkbenchError("Give a NAME or --preset (mixtures, depths), not both and not neither.")
    base = options_from(args, ZooOptions, None)
    plans = {args.name: {}} if args.name else PRESETS[args.preset]
    given = {k.split(".", 1)[1] for k in vars(args) if k.startswith("run.")}
    runs = {
        name: ZooOptions(**{**base.to_dict(), **{k: v for k, v in changes.items() if k not in given}})
        for name, changes in plans.items()
    }
    from workbench.zoo.manifest import copy_twin, trained_twin
    from workbench.zoo.train import plan_run, train

    zoo = zoo_root_of(args)
    for options in runs.values():  # every mixture and budget checked before the first model trains
        plan_run(options, zoo)
    for name, options in runs.items():
        twin = None if args.force else trained_twin(options, zoo)
        if twin == name and args.preset:  # a preset run again carries on where it stopped
            print(f"zoo:{name} is already trained with these settings; skipped (--force trains it again).")
            continue
        if twin is not None and twin != name:
            print(f"zoo:{name} has the settings of zoo:{twin}, so the same weights: copied, not retrained.")
            folder = copy_twin(name, twin, zoo)
        else:
            folder = train(name, options, zoo, force=args.force, show_progress=not args.quiet)
        print(f"zoo:{name} ready at {folder}")
    return 0


def finetune_options_from(args: argparse.Namespace, zoo: Path) -> ZooOptions:
    """The fine-tune's settings from ``zoo finetune``'s flags.

    The base's settings and tokenizer, the fine-tuning defaults, then the flags given
    (``--language X`` meaning ``--mixture X=1``).
    """
    from workbench.zoo.manifest import base_manifest
    from workbench.zoo.options import finetune_options

    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("run.")}
    if "base" not in given:
        raise WorkbenchError("Name the zoo model to start from: --base NAME ('workbench zoo list' shows them).")
    if args.language and "mixture" in given:
        raise WorkbenchError("Give --language or --mixture, not both (--language X means --mixture X=1).")
    if args.language:
        given["mixture"] = f"{args.language.strip().lower()}=1"
    return finetune_options(given["base"], base_manifest(given["base"], zoo), given)


def cmd_zoo_finetune(args: argparse.Namespace) -> int:
    """``workbench zoo finetune NAME --base BASE --language X``: fine-tune a trained zoo model into a new one.

    An interrupted fine-tune resumes; the two models compare (model diffing).
    """
    from workbench.zoo.manifest import copy_twin, trained_twin
    from workbench.zoo.train import plan_run, train

    zoo = zoo_root_of(args)
    options = finetune_options_from(args, zoo)
    plan_run(options, zoo)  # shape, tokenizer, mixture and budget checked before training
    twin = None if args.force else trained_twin(options, zoo)
    if twin is not None and twin != args.name:
        print(f"zoo:{args.name} has the settings and base of zoo:{twin}, so the same weights: copied, not retrained.")
        folder = copy_twin(args.name, twin, zoo)
    else:
        folder = train(args.name, options, zoo, force=args.force, show_progress=not args.quiet)
    print(f"zoo:{args.name} (fine-tuned from zoo:{options.base} on {options.mixture}) ready at {folder}")
    return 0


def zoo_root_of(args: argparse.Namespace) -> Path:
    """The zoo folder: ``--zoo``, else the default ([`zoo_root`][workbench.models.catalog.zoo_root])."""
    from workbench.models.catalog import zoo_root

    return Path(args.zoo) if args.zoo else zoo_root()


def cmd_zoo_list(args: argparse.Namespace) -> int:
    """``workbench zoo list``: the trained zoo models with their held-out loss per language."""
    from workbench.models.catalog import trained

    models = trained(zoo_root_of(args))
    if not models:
        print(
            f"No zoo models in {zoo_root_of(args)}; train one with 'workbench zoo train NAME' or '--preset mixtures'."
        )
        return 0
    print(
        f"{'name':<12} {'layers':>6} {'d_model':>7} {'params':>7} {'tokens':>7} {'min':>5}  "
        "held-out loss (nats/token)  mixture"
    )
    for name, info in models.items():
        o = info["options"]
        held = " ".join(f"{lang} {loss:.2f}" for lang, loss in info["heldout_loss"].items())
        print(
            f"{name:<12} {o['layers']:>6} {o['d_model']:>7} {info['parameters'] / 1e6:>6.1f}M "
            f"{info['tokens']['total'] / 1e6:>6.1f}M {info['seconds'] / 60:>5.1f}  {held}  {info['mixture']}"
        )
    return 0


def cmd_zoo_compare(args: argparse.Namespace) -> int:
    """``workbench zoo compare``: the analyses on every model of a family, then one comparison report."""
    from workbench.zoo.compare import family_languages, family_names

    names = family_names(args.names, args.preset)
    run_options = options_from(args, RunOptions, None)
    if "run.languages" not in vars(args):
        run_options = RunOptions(**{**run_options.to_dict(), "languages": family_languages(names)})
    analyses = analyses_from(args, split_list(args.analyses), None)
    out = Path(args.out or f"results/zoo-{args.preset or 'compare'}")
    from workbench.zoo.compare import gather, run_family
    from workbench.zoo.plots import write_zoo_report

    run_family(names, run_options, analyses, out, show_progress=not args.quiet)
    comparison = gather(names, out, args.preset or "custom")
    comparison.save(out)
    print(f"Report: {write_zoo_report(out, comparison).resolve()}")
    return 0


_Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--force``, ``--zoo`` and ``--quiet``: what a command that trains takes besides the model's settings."""
    parser.add_argument("--force", action="store_true", help="train again over an existing model of that name")
    parser.add_argument("--zoo", default=None, help=_ZOO_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_train(actions: _Actions) -> None:
    """``zoo train``."""
    from workbench.zoo.options import ZooOptions
    from workbench.zoo.presets import PRESETS

    train = actions.add_parser("train", help="train a zoo model from scratch (resumes an interrupted run)")
    train.add_argument("name", nargs="?", default=None, help="the model's name (--model zoo:NAME)")
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="mixtures: English 90/70/50/20/0%% over en,fr,de,ar,zh; depths: 2, 4, 8 layers (options given still win)",
    )
    add_options(train, ZooOptions, only=tuple(f.name for f in fields(ZooOptions) if f.name != "base"))
    _add_run_flags(train)
    train.set_defaults(func=cmd_zoo_train)


def _add_finetune(actions: _Actions) -> None:
    """``zoo finetune``."""
    from workbench.zoo.options import FINETUNE_DEFAULTS, ZooOptions

    finetune = actions.add_parser(
        "finetune",
        help="fine-tune a trained zoo model on a language (or mixture) into a new zoo model, to diff the "
        "two (resumes an interrupted run)",
        epilog="Settings start from --base's; its shape and tokenizer must stay. "
        f"Fine-tuning defaults: --tokens {FINETUNE_DEFAULTS['tokens']} --lr {FINETUNE_DEFAULTS['lr']:g} --warmup "
        f"{FINETUNE_DEFAULTS['warmup']} --seed BASE_SEED+1 (other sequences than the base's first). "
        "Options given win.",
    )
    finetune.add_argument("name", help="the fine-tuned model's name (--model zoo:NAME)")
    finetune.add_argument("--language", default=None, help="fine-tune on this language alone (means --mixture LANG=1)")
    add_options(finetune, ZooOptions)
    _add_run_flags(finetune)
    finetune.set_defaults(func=cmd_zoo_finetune)


def _add_compare(actions: _Actions) -> None:
    """``zoo compare``: the run's options (but ``--model``) and every analysis's."""
    from workbench.zoo.compare import DEFAULT_COMPARE_ANALYSES
    from workbench.zoo.presets import PRESETS

    compare = actions.add_parser(
        "compare",
        help="run analyses on every model of a family and compare them in one "
        "report (held-out loss vs share, lens, PLND, FFN layer similarity)",
    )
    compare.add_argument("names", nargs="*", help="zoo models to compare (or --preset)")
    compare.add_argument("--preset", choices=sorted(PRESETS), default=None, help="compare a preset's models")
    compare.add_argument(
        "--analyses",
        default=",".join(DEFAULT_COMPARE_ANALYSES),
        help=f"comma-separated, from: {', '.join(REGISTRY)} (default: %(default)s)",
    )
    add_options(compare, RunOptions, only=tuple(f.name for f in fields(RunOptions) if f.name != "model"))
    for member in REGISTRY:
        add_options(compare, load_slice(member).Options)
    compare.add_argument(
        "--out",
        default=None,
        help="output folder, a subfolder per model (default: results/zoo-PRESET; re-running resumes)",
    )
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(func=cmd_zoo_compare)


def add_commands(sub: _Actions) -> None:
    """``zoo train|finetune|compare|list``."""
    zoo = sub.add_parser(
        "zoo", help="small multilingual models trained here on language mixtures (train, finetune, list, compare)"
    )
    actions = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    _add_train(actions)
    _add_finetune(actions)
    _add_compare(actions)
    listing = actions.add_parser("list", help="the trained zoo models, with held-out loss per language")
    listing.add_argument("--zoo", default=None, help=_ZOO_HELP)
    listing.set_defaults(func=cmd_zoo_list)
