"""``workbench langid``: how accurate the token language labels are, on held-out verses."""

from __future__ import annotations

import argparse

from workbench.errors import WorkbenchError
from workbench.runs.options import RunOptions


def cmd_langid(args: argparse.Namespace) -> int:
    """``workbench langid``: precision and recall of the token labels per language."""
    from workbench.data.corpus import BibleCorpus
    from workbench.data.languages import parse_languages
    from workbench.language.classifier import default_classifier
    from workbench.language.vocabulary import heldout_accuracy, vocab_languages
    from workbench.models.loading import load_model

    model = load_model(args.model)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise WorkbenchError(f"{args.model} has no tokenizer whose vocabulary could be labelled.")
    corpus = BibleCorpus()
    vocab = vocab_languages(tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    rows = heldout_accuracy(tokenizer, vocab, corpus, parse_languages(args.languages), args.documents, args.seed)
    print(f"Token language labels on {args.documents} held-out verses per language ({model.cfg.model_name} tokenizer)")
    print(
        f"{'lang':<5} {'tokens':>7} {'content':>8} {'precision':>10} {'recall':>7} "
        f"{'rec|amb':>8} {'ambig':>6} {'unknown':>8}"
    )
    for r in rows:
        print(
            f"{r['language']:<5} {r['tokens']:>7} {r['content_tokens']:>8} {r['precision']:>10.3f} {r['recall']:>7.3f} "
            f"{r['recall_or_ambiguous']:>8.3f} {r['ambiguous']:>6.3f} {r['unknown']:>8.3f}"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``langid``."""
    langid = sub.add_parser("langid", help="accuracy of the token language labels on held-out verses")
    langid.add_argument("--model", default=RunOptions.model, help="whose tokenizer's vocabulary to label")
    langid.add_argument("--languages", default="en,de,fr,es,it,pt,ru,zh,ja,ko,ar,hi,sw,vi,id,tr")
    langid.add_argument("--documents", type=int, default=300, help="held-out verses per language")
    langid.add_argument("--seed", type=int, default=0)
    langid.set_defaults(func=cmd_langid)
