"""The main job behind ``workbench run``: analyses of one model on one corpus, into one folder.

The folder holds ``manifest.json`` (what made the results), one file set per analysis, and
``report.html``. Work is saved per language as it finishes; running the same job again on the
same folder resumes, reusing everything already computed. A folder made with other settings is
refused rather than mixed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.batching import DEFAULT_BATCH_TOKENS
from workbench.corpus import Corpus, open_corpus
from workbench.deactivation import GROUPS
from workbench.errors import ResultsMismatchError, WorkbenchError
from workbench.models import DEFAULT_MODEL, load_model, model_source
from workbench.neurons import STRUCTURES, check_structures
from workbench.perplexity import LanguageLoss, LossResult, language_loss
from workbench.results import MANIFEST, load_json, make_manifest, save_json

log = logging.getLogger(__name__)

ANALYSES: tuple[str, ...] = ("loss", "lens", "plnd", "ablate")
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
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
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
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        if self.ablate_sets not in ABLATE_SETS:
            raise WorkbenchError(f"Unknown neuron sets {self.ablate_sets!r}; choose from {', '.join(ABLATE_SETS)}.")
        outside = [lang for lang in self.ablate_languages if lang not in self.languages]
        if outside:
            raise WorkbenchError(
                f"Deactivation languages {', '.join(outside)} are not among the run's languages "
                f"({', '.join(self.languages)}): their neurons are found by PLND over those."
            )

    def ablate_language_list(self) -> list[str]:
        """The languages of the deactivation experiment: as given, or the run's languages among
        en, de, fr, es, zh, ru, ja, ar (its first 8 if none of those)."""
        if self.ablate_languages:
            return list(self.ablate_languages)
        return [lang for lang in self.languages if lang in ABLATE_LANGUAGES] or self.languages[:8]

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

    if "loss" in config.analyses:
        run_loss(model, corpus, config, out, show_progress)
    if "lens" in config.analyses:
        run_lens(model, corpus, config, out, show_progress)
    if "plnd" in config.analyses:
        run_plnd(model, corpus, config, out, show_progress)
    if "ablate" in config.analyses:
        run_ablate(model, corpus, config, out, show_progress)
    return write_report(out)
