"""The finetune slice: train only a language's neurons (and random ones), measure every language, report."""

from __future__ import annotations

import random

import plotly.graph_objects as go
from tqdm.auto import tqdm

from workbench.analyses.finetune.options import Options
from workbench.analyses.finetune.plots import enhancement_figure, enhancement_matrix_figure, training_curve_figure
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.errors import WorkbenchError
from workbench.interventions.enhancement import EnhancementResult as Result
from workbench.interventions.enhancement import run_enhancement
from workbench.interventions.measures import MeasureMemo
from workbench.interventions.options import DeactivationOptions
from workbench.language.classifier import default_classifier
from workbench.language.vocabulary import vocab_languages
from workbench.lens.layer_language import token_categories
from workbench.models.model import Model
from workbench.neurons.plnd_sets import PLNDResult
from workbench.runs.options import OptionError
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def training_ids(corpus: Corpus, language: str, n: int, exclude: set[str], seed: int) -> list[str]:
    """``n`` analysis-split ids of ``language`` outside ``exclude``, in a seeded random order.

    The first ``k`` of them are a random sample for every ``k`` (nested training sets).

    Raises:
        WorkbenchError: The language has fewer than ``n`` such documents.
    """
    pool = [i for i in corpus.ids([language], "analysis") if i not in exclude]
    if len(pool) < n:
        raise WorkbenchError(f"{language}: only {len(pool)} analysis documents for {n} training documents.")
    return random.Random(seed).sample(pool, n)


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Train each target's neurons (and a random control), then measure the evaluated languages.

    Training reads the target's analysis verses, none of them a PLND verse; the measurements are on
    held-out verses. Deltas and measurements are checkpointed and reused on resume.
    """
    plnd = store.result("plnd")
    sets = plnd.named_sets(options.sets)
    targets = options.targets(store.languages)
    empty = [lang for lang in targets if len(sets[lang]) == 0]
    if empty:
        raise OptionError(
            f"The {options.sets} neuron sets of {', '.join(empty)} are empty: nothing to train. Loosen the selection "
            "(e.g. --plnd-specificity 0.9 or a larger --plnd-value), choose other --finetune-languages, or another "
            "--finetune-sets."
        )
    evaluated = options.evaluated(store.languages, DeactivationOptions().language_list(store.languages))
    used = set(corpus.sample_ids(store.languages, plnd_documents(plnd), "analysis", store.run.seed))
    seed = store.run.seed
    on_too_long = store.run.length_policy
    documents = {}
    for lang in targets:
        ids = training_ids(corpus, lang, options.documents_needed, used, seed)
        documents[lang] = tokenize(model, corpus.parallel([lang], ids)[lang]["text"], ids, on_too_long=on_too_long)
    heldout = corpus.sample_ids(store.languages, options.documents, "heldout", seed)
    held = corpus.parallel(evaluated, heldout)
    evaluation = {lang: tokenize(model, held[lang]["text"], heldout, on_too_long=on_too_long) for lang in evaluated}
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    categories = {lang: token_categories(vocab, lang) for lang in evaluated}
    deltas = store.part(NAME, "deltas")
    with tqdm(desc="finetune", unit=" steps", disable=not store.show_progress) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update()

        result = run_enhancement(
            model,
            documents,
            {lang: sets[lang] for lang in targets},
            evaluation,
            categories,
            options,
            folder=store.folder,
            deltas=str(deltas.relative_to(store.folder)) if deltas is not None and store.folder else "finetune",
            memo=MeasureMemo(store.part(NAME, "measurements.json")),
            seed=seed,
            batch_tokens=store.run.batch_tokens,
            settings={
                "split": "analysis (training) / heldout (evaluation)",
                "documents": len(heldout),
                **options.to_dict(),
            },
            progress=progress,
        )
    return store.keep(NAME, result)


def plnd_documents(plnd: PLNDResult) -> int:
    """How many analysis verses per language PLND read (they are never training verses)."""
    return max((d["n_documents"] for d in plnd.documents.values()), default=0)


def figures(result: Result) -> dict[str, go.Figure]:
    """Gains per training size (loss, accuracy), the gains matrix, and the training curves."""
    return {
        "finetune_loss": enhancement_figure(result, "loss"),
        "finetune_matrix": enhancement_matrix_figure(result, "loss"),
        "finetune_accuracy": enhancement_figure(result, "accuracy"),
        "finetune_curves": training_curve_figure(result),
    }


def verdict(result: Result) -> str:
    """One sentence per target, computed from the numbers.

    The target's gain with its own neurons against the other languages' and the random control's,
    at the control's size.
    """
    sentences = []
    for target in result.targets:
        randoms = [r for r in result.runs if r.target == target and r.kind == "random"]
        size = randoms[0].size if randoms else max(r.size for r in result.runs if r.target == target)
        own = [r for r in result.runs if r.target == target and r.kind == "language" and r.size == size]
        if not own:
            continue
        run = own[0]
        text = (
            f"{target}, {run.neurons} neurons on {size} documents: {target} loss "
            f"{-result.gain(run, target):+.3f} nats/token, other languages {-result.others_gain(run):+.3f} (mean)"
        )
        if "en" in result.languages and target != "en":
            text += f", en {-result.gain(run, 'en'):+.3f}"
        if randoms:
            text += f"; as many random neurons: {target} {-result.gain(randoms[0], target):+.3f}"
        sentences.append(text + ".")
    return " ".join(sentences)


def section(result: Result) -> Section:
    """The report's section: what is trained, on what, how it is measured, and the verdict."""
    options = result.options
    n_docs = result.settings.get("documents", "?")
    intro = (
        "MWork Figure 4 and Table 6: only the parameters of a language's neurons are trained (causal-LM loss, "
        f"AdamW, lr {options.get('lr')}, {options.get('epochs')} epoch(s), gradient clipping) on "
        f"{', '.join(str(n) for n in options.get('sizes', []))} of its verses (nested random samples of the analysis "
        "split, none of them a PLND verse), and as many random neurons (same count per layer and structure) on "
        f"{options.get('random_size')}. Every listed language is then measured on the same {n_docs} held-out verses. "
        "Gains are improvements: loss down, accuracy up. Every other parameter is bit-for-bit the base model's "
        "(tested); each run's trained entries are saved as a delta (see <code>delta_file</code>) and "
        "<code>workbench export</code> writes a full model."
    )
    return Section(
        "Enhancing a language by training only its neurons (MWork Fig. 4, Table 6)",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table("loss"), result.table("accuracy")],
    )
