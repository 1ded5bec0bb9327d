"""The main job behind ``workbench run``: analyses of one model on one corpus, into one folder.

The folder holds ``manifest.json`` (what made the results), one file set per analysis, and
``report.html``. Work is saved per language as it finishes; running the same job again on the
same folder resumes, reusing everything already computed. A folder made with other settings is
refused rather than mixed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench.batching import DEFAULT_BATCH_TOKENS
from workbench.corpus import Corpus, open_corpus
from workbench.deactivation import GROUPS
from workbench.errors import ResultsMismatchError, WorkbenchError
from workbench.models import DEFAULT_MODEL, load_model, model_source
from workbench.neurons import STRUCTURES, check_structures
from workbench.perplexity import LanguageLoss, LossResult, language_loss
from workbench.results import MANIFEST, load_json, make_manifest, save_json

log = logging.getLogger(__name__)

ANALYSES: tuple[str, ...] = ("loss", "lens", "plnd", "ablate", "finetune", "ffn")
DEFAULT_ANALYSES: tuple[str, ...] = ("loss", "lens", "plnd", "ablate")  # finetune and ffn: asked for by name
FINETUNE_TARGETS: tuple[str, ...] = ("de", "sw")  # a high- and a lower-resource language (MWork Fig. 4, Table 6)
ABLATE_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ru", "ja", "ar")
ABLATE_SETS: tuple[str, ...] = ("plnd", "exclusive", "lape")
DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ko", "ar", "hi", "sw",
)  # fmt: skip


@dataclass
class RunConfig:
    """Everything that decides a run's numbers (plus where it writes them)."""

    model: str = DEFAULT_MODEL
    corpus: str = "bible"
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))
    translations: dict[str, str] = field(default_factory=dict)
    analyses: list[str] = field(default_factory=lambda: list(DEFAULT_ANALYSES))
    heldout_documents: int = 32
    lens_documents: int = 16
    lens_positions: str = "sample"
    lens_positions_per_document: int = 8
    lens_k: int = 10
    lens_final_norm: bool = True
    plnd_documents: int = 64
    plnd_structures: list[str] = field(default_factory=lambda: list(STRUCTURES))
    plnd_rule: str = "top_fraction"
    plnd_value: float = 0.01
    plnd_specificity: float = 1.0
    plnd_exclusive: bool = False
    plnd_include_bos: bool = False
    ablate_languages: list[str] = field(default_factory=list)  # empty: see ablate_language_list()
    ablate_documents: int = 12
    ablate_sets: str = "plnd"
    ablate_seeds: int = 3
    ablate_groups: list[str] = field(default_factory=lambda: list(GROUPS))
    ablate_understanding: int | None = None
    ablate_generation: int | None = None
    ablate_new_tokens: int = 16
    finetune_languages: list[str] = field(default_factory=list)  # empty: see finetune_targets()
    finetune_eval_languages: list[str] = field(default_factory=list)  # empty: see finetune_evaluated()
    finetune_sizes: list[int] = field(default_factory=lambda: [100, 200, 400, 800])
    finetune_random_size: int = 400
    finetune_sets: str = "plnd"
    finetune_documents: int = 16
    finetune_epochs: int = 1
    finetune_lr: float = 1e-4
    finetune_batch_tokens: int = DEFAULT_BATCH_TOKENS
    ffn_documents: int = 64
    ffn_positions: str = "all"
    ffn_tolerance: float | None = None  # None: 0 for ReLU, 1e-2 for smooth activations
    ffn_include_bos: bool = False
    ffn_compare_models: list[str] = field(default_factory=list)
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    on_too_long: str = "truncate"
    seed: int = 0
    device: str = "cpu"
    out: Path = Path("results/run")

    def __post_init__(self) -> None:
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown:
            raise WorkbenchError(f"Unknown analysis {', '.join(unknown)}; choose from {', '.join(ANALYSES)}.")
        try:
            self.plnd_structures = check_structures(self.plnd_structures)
            self.plnd_selection()
            self.deactivation_options()
            self.enhancement_options()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        from workbench.ffn import POSITIONS

        if self.ffn_positions not in POSITIONS:
            raise WorkbenchError(f"Unknown FFN positions {self.ffn_positions!r}; choose from {', '.join(POSITIONS)}.")
        for sets in (self.ablate_sets, self.finetune_sets):
            if sets not in ABLATE_SETS:
                raise WorkbenchError(f"Unknown neuron sets {sets!r}; choose from {', '.join(ABLATE_SETS)}.")
        for what, chosen in (("Deactivation", self.ablate_languages), ("Fine-tuning", self.finetune_languages),
                             ("Evaluation", self.finetune_eval_languages)):  # fmt: skip
            outside = [lang for lang in chosen if lang not in self.languages]
            if outside:
                raise WorkbenchError(
                    f"{what} languages {', '.join(outside)} are not among the run's languages "
                    f"({', '.join(self.languages)}): add them to --languages (PLND and the aligned samples cover those)."
                )

    def ablate_language_list(self) -> list[str]:
        """The languages of the deactivation experiment: as given, or the run's languages among
        en, de, fr, es, zh, ru, ja, ar (its first 8 if none of those)."""
        if self.ablate_languages:
            return list(self.ablate_languages)
        return [lang for lang in self.languages if lang in ABLATE_LANGUAGES] or self.languages[:8]

    def finetune_targets(self) -> list[str]:
        """The languages whose neurons are trained: as given, or de and sw among the run's
        languages (else its first non-English one)."""
        if self.finetune_languages:
            return list(self.finetune_languages)
        chosen = [lang for lang in self.languages if lang in FINETUNE_TARGETS]
        return chosen or [lang for lang in self.languages if lang != "en"][:1]

    def finetune_evaluated(self) -> list[str]:
        """The languages measured before and after fine-tuning: as given, or the deactivation
        languages plus the targets."""
        chosen = self.finetune_eval_languages or self.ablate_language_list()
        return list(dict.fromkeys([*chosen, *self.finetune_targets()]))

    def enhancement_options(self):
        from workbench.enhancement import EnhancementOptions
        from workbench.finetune import TrainOptions

        train = TrainOptions(
            epochs=self.finetune_epochs, lr=self.finetune_lr, batch_tokens=self.finetune_batch_tokens, seed=self.seed
        )
        return EnhancementOptions(tuple(self.finetune_sizes), self.finetune_random_size, self.seed, train, self.batch_tokens)

    def deactivation_options(self):
        from workbench.deactivation import DeactivationOptions

        return DeactivationOptions(
            groups=tuple(self.ablate_groups), seeds=self.ablate_seeds, understanding=self.ablate_understanding,
            generation=self.ablate_generation, new_tokens=self.ablate_new_tokens, batch_tokens=self.batch_tokens,
        )  # fmt: skip

    def plnd_selection(self):
        from workbench.plnd import Selection

        return Selection(self.plnd_rule, self.plnd_value, self.plnd_specificity, self.plnd_exclusive)

    def settings(self) -> dict:
        """The settings a resumed run must share with the folder's results (not out or device)."""
        data = asdict(self)
        data.pop("out")
        data.pop("device")
        return data


def _check_folder(out: Path, settings: dict) -> None:
    """Refuse an output folder whose manifest was made with other settings."""
    path = out / MANIFEST
    if not path.exists():
        return
    previous = load_json(path).get("settings", {})
    if previous != settings:
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        raise ResultsMismatchError(
            f"{out} holds results made with other settings (differs in: {', '.join(changed)}). "
            "Use another --out folder, or delete this one to start again."
        )


def _loss_for_language(model, corpus: Corpus, config: RunConfig, lang: str, ids, part: Path, show_progress):
    """One language's loss, from its saved part file when a previous run finished it."""
    if part.exists():
        saved = LanguageLoss.from_dict(load_json(part))
        if saved.ids == ids:
            log.info("loss %s: reusing %s", lang, part)
            return saved
    docs = corpus.parallel([lang], ids)[lang]
    result = language_loss(
        model, lang, ids, docs["text"], config.batch_tokens, corpus.source_of(lang),
        config.on_too_long, show_progress,
    )  # fmt: skip
    save_json(part, result.to_dict())
    return result


def run_loss(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """Per-language loss on aligned held-out documents -> loss.json, loss_documents.npz."""
    ids = corpus.sample_ids(config.languages, config.heldout_documents, "heldout", config.seed)
    losses = {
        lang: _loss_for_language(model, corpus, config, lang, ids, out / "parts" / f"loss-{lang}.json", show_progress)
        for lang in config.languages
    }
    LossResult(losses, settings={"split": "heldout", **config.settings()}).save(out)


def run_lens(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """Logit lens per input language on aligned analysis documents -> lens.json."""
    from workbench.langid import default_classifier, heldout_accuracy, vocab_languages
    from workbench.layer_language import LayerLanguages, LensResult, layer_names, lens_language

    classifier = default_classifier(corpus)
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, classifier)
    ids = corpus.sample_ids(config.languages, config.lens_documents, "analysis", config.seed)
    docs = corpus.parallel(config.languages, ids)
    results = {}
    for lang in config.languages:
        part = out / "parts" / f"lens-{lang}.json"
        if part.exists():
            results[lang] = LayerLanguages(**load_json(part))
            continue
        results[lang] = lens_language(
            model, vocab, lang, docs[lang]["text"], ids, k=config.lens_k, positions=config.lens_positions,
            per_doc=config.lens_positions_per_document, final_norm=config.lens_final_norm,
            batch_tokens=config.batch_tokens, seed=config.seed, on_too_long=config.on_too_long,
            show_progress=show_progress,
        )  # fmt: skip
        save_json(part, vars(results[lang]))
    accuracy = heldout_accuracy(model.tokenizer, vocab, corpus, config.languages, config.heldout_documents, config.seed)
    settings = {k: v for k, v in config.settings().items() if k.startswith("lens_") or k == "seed"}
    LensResult(results, layer_names(model), {"split": "analysis", **settings}, classifier.describe(), accuracy).save(out)


def run_plnd(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """PLND (and LAPE) per language on aligned analysis documents -> plnd.json, plnd/*.safetensors.

    Each language's summary is saved as soon as it is done and reused by a resumed run.
    """
    from workbench.plnd import ImportanceSummary, PLNDResult, language_importance

    selection = config.plnd_selection()
    ids = corpus.sample_ids(config.languages, config.plnd_documents, "analysis", config.seed)
    docs = corpus.parallel(config.languages, ids)
    summaries = {}
    for lang in config.languages:
        part = out / PLNDResult.SUMMARIES / f"{lang}.safetensors"
        if part.exists():
            saved = ImportanceSummary.load(part)
            if saved.ids == ids and list(saved.total) == config.plnd_structures:
                log.info("plnd %s: reusing %s", lang, part)
                summaries[lang] = saved
                continue
        summaries[lang] = language_importance(
            model, lang, docs[lang]["text"], ids, selection, config.plnd_structures, lape=True,
            include_bos=config.plnd_include_bos, batch_tokens=config.batch_tokens,
            on_too_long=config.on_too_long, show_progress=show_progress,
        )  # fmt: skip
        summaries[lang].save(part)
    settings = {k: v for k, v in config.settings().items() if k.startswith("plnd_") or k == "seed"}
    PLNDResult.build(model, summaries, selection, {"split": "analysis", **settings}).save(out)


def run_ablate(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """Deactivation experiment on held-out verses with the PLND (or LAPE) sets of this folder
    -> deactivation.json. Measurements are checkpointed in parts/ and reused on resume."""
    from tqdm.auto import tqdm

    from workbench.batching import tokenize
    from workbench.deactivation import run_deactivation
    from workbench.langid import default_classifier, vocab_languages
    from workbench.layer_language import token_categories
    from workbench.plnd import PLNDResult

    if not (out / PLNDResult.JSON).exists():
        run_plnd(model, corpus, config, out, show_progress)
    plnd = PLNDResult.load(out)
    langs = config.ablate_language_list()
    sets = plnd.named_sets(config.ablate_sets)
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    ids = corpus.sample_ids(config.languages, config.heldout_documents, "heldout", config.seed)[: config.ablate_documents]
    docs = corpus.parallel(langs, ids)
    tokens = {lang: tokenize(model, docs[lang]["text"], ids, on_too_long=config.on_too_long) for lang in langs}
    categories = {lang: token_categories(vocab, lang) for lang in langs}
    settings = {k: v for k, v in config.settings().items() if k.startswith("ablate_") or k == "seed"}
    with tqdm(desc="deactivation", unit=" runs", disable=not show_progress) as bar:
        result = run_deactivation(
            model, tokens, {lang: sets[lang] for lang in langs}, categories, config.deactivation_options(),
            checkpoint=out / "parts" / "deactivation.json", progress=lambda label: (bar.set_postfix_str(label), bar.update()),
            settings={"split": "heldout", "documents": len(ids), "neuron_sets": config.ablate_sets, **settings},
        )  # fmt: skip
    result.save(out)


def training_ids(corpus: Corpus, language: str, n: int, exclude: set[str], seed: int) -> list[str]:
    """``n`` analysis-split ids of ``language`` outside ``exclude``, in a seeded random order: the
    first ``k`` of them are a random sample for every ``k`` (nested training sets)."""
    pool = [i for i in corpus.ids([language], "analysis") if i not in exclude]
    if len(pool) < n:
        raise WorkbenchError(f"{language}: only {len(pool)} analysis documents for {n} training documents.")
    return random.Random(seed).sample(pool, n)


def run_finetune(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """Train each target language's neurons (and random controls) on its analysis documents, not
    those PLND used; measure the evaluated languages on held-out verses -> finetune.json and the
    deltas in finetune/. Deltas and measurements are reused on resume."""
    from tqdm.auto import tqdm

    from workbench.batching import tokenize
    from workbench.enhancement import run_enhancement
    from workbench.langid import default_classifier, vocab_languages
    from workbench.layer_language import token_categories
    from workbench.plnd import PLNDResult

    if not (out / PLNDResult.JSON).exists():
        run_plnd(model, corpus, config, out, show_progress)
    sets = PLNDResult.load(out).named_sets(config.finetune_sets)
    options = config.enhancement_options()
    targets, evaluated = config.finetune_targets(), config.finetune_evaluated()
    used = set(corpus.sample_ids(config.languages, config.plnd_documents, "analysis", config.seed))
    documents = {}
    for lang in targets:
        ids = training_ids(corpus, lang, options.documents_needed, used, config.seed)
        documents[lang] = tokenize(model, corpus.parallel([lang], ids)[lang]["text"], ids, on_too_long=config.on_too_long)
    heldout = corpus.sample_ids(config.languages, config.heldout_documents, "heldout", config.seed)[: config.finetune_documents]
    held = corpus.parallel(evaluated, heldout)
    evaluation = {lang: tokenize(model, held[lang]["text"], heldout, on_too_long=config.on_too_long) for lang in evaluated}
    vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
    categories = {lang: token_categories(vocab, lang) for lang in evaluated}
    settings = {k: v for k, v in config.settings().items() if k.startswith("finetune_") or k.startswith("plnd_") or k == "seed"}
    with tqdm(desc="finetune", unit=" steps", disable=not show_progress) as bar:
        result = run_enhancement(
            model, documents, {lang: sets[lang] for lang in targets}, evaluation, categories, options, folder=out,
            settings={"split": "analysis (training) / heldout (evaluation)", "documents": len(heldout), **settings},
            progress=lambda label: (bar.set_postfix_str(label, refresh=False), bar.update()),
        )  # fmt: skip
    result.save(out)


def _ffn_summary(model, corpus: Corpus, config: RunConfig, lang: str, ids: list[str], part: Path, pooled: bool):
    """One language's FFN summary on ``ids``, from its saved part when the settings match."""
    from workbench.batching import tokenize
    from workbench.ffn import FFNSummary, summarise

    if part.exists():
        saved = FFNSummary.load(part)
        same_rows = (saved.ids, saved.positions, saved.include_bos) == (ids, config.ffn_positions, config.ffn_include_bos)
        if same_rows and config.ffn_tolerance in (None, saved.tolerance) and (saved.pooled or not pooled):
            return saved
    tokens = tokenize(model, corpus.parallel([lang], ids)[lang]["text"], ids, on_too_long=config.on_too_long)
    summary = summarise(model, lang, tokens, ids, config.ffn_tolerance, config.ffn_positions, config.ffn_include_bos,
                        pooled, config.batch_tokens)  # fmt: skip
    summary.save(part)
    return summary


def run_ffn(model, corpus: Corpus, config: RunConfig, out: Path, show_progress: bool) -> None:
    """FFN detectors and combinators per language on parallel analysis verses and on unrelated
    ones; layer similarity within the model and against ``ffn_compare_models`` -> ffn.json."""
    from tqdm.auto import tqdm

    from workbench.ffn import SUBLAYERS, FFNResult
    from workbench.similarity import MEASURES, layer_similarity

    langs = config.languages
    parallel_ids = corpus.sample_ids(langs, config.ffn_documents, "analysis", config.seed)
    rest = sorted(set(corpus.ids(langs, "analysis")) - set(parallel_ids))
    unrelated_ids = sorted(random.Random(config.seed + 1).sample(rest, min(config.ffn_documents, len(rest))))
    folder = out / FFNResult.SUMMARIES
    parallel, unrelated = {}, {}
    for lang in tqdm(langs, desc="ffn", unit=" languages", disable=not show_progress):
        parallel[lang] = _ffn_summary(model, corpus, config, lang, parallel_ids, folder / f"{lang}-parallel.safetensors", True)
        unrelated[lang] = _ffn_summary(model, corpus, config, lang, unrelated_ids, folder / f"{lang}-unrelated.safetensors", False)
    name = model_source(model).get("name", config.model)
    reps = {sub: np.concatenate([parallel[lang].pooled[sub] for lang in langs]) for sub in SUBLAYERS}
    comparisons = [(name, reps)]
    for other in config.ffn_compare_models:
        other_model = load_model(other, device=config.device)
        folder_other = folder / "compare" / _safe_name(other)
        summaries = {lang: _ffn_summary(other_model, corpus, config, lang, parallel_ids, folder_other / f"{lang}.safetensors", True)
                     for lang in langs}  # fmt: skip
        comparisons.append((model_source(other_model).get("name", other),
                            {sub: np.concatenate([summaries[lang].pooled[sub] for lang in langs]) for sub in SUBLAYERS}))  # fmt: skip
        del other_model
    similarity = [
        {"a": name, "b": other_name, "sublayer": sub, "measure": measure,
         "matrix": layer_similarity(reps[sub], other_reps[sub], measure).tolist()}
        for other_name, other_reps in comparisons for sub in SUBLAYERS for measure in MEASURES
    ]  # fmt: skip
    settings = {k: v for k, v in config.settings().items() if k.startswith("ffn_") or k == "seed"}
    settings.update(split="analysis", parallel_ids=len(parallel_ids), unrelated_ids=len(unrelated_ids))
    FFNResult.build(parallel, unrelated, similarity, settings).save(out)


def _safe_name(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)[-80:]


def run(config: RunConfig, show_progress: bool = True) -> Path:
    """Run the job; return the path of the HTML report."""
    from workbench.report import write_report

    out = Path(config.out)
    corpus = open_corpus(config.corpus, config.translations or None)
    # Cheap checks first: a bad language or an empty selection fails before the model loads.
    corpus.check_languages(config.languages)
    corpus.sample_ids(config.languages, config.heldout_documents, "heldout", config.seed)
    corpus.sample_ids(config.languages, config.lens_documents, "analysis", config.seed)
    corpus.sample_ids(config.languages, config.plnd_documents, "analysis", config.seed)
    settings = config.settings()
    _check_folder(out, settings)

    model = load_model(config.model, device=config.device)
    manifest = make_manifest(model_source(model), corpus.describe(), config.languages, settings)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        manifest["created"] = load_json(out / MANIFEST)["created"]
    save_json(out / MANIFEST, manifest)

    runners = {"loss": run_loss, "lens": run_lens, "plnd": run_plnd, "ablate": run_ablate,
               "finetune": run_finetune, "ffn": run_ffn}  # fmt: skip
    for analysis in ANALYSES:  # in this order: ablate and finetune reuse plnd's sets
        if analysis in config.analyses:
            runners[analysis](model, corpus, config, out, show_progress)
    return write_report(out)
