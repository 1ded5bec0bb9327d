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
from workbench.errors import ResultsMismatchError
from workbench.models import DEFAULT_MODEL, load_model, model_source
from workbench.perplexity import LanguageLoss, LossResult, language_loss
from workbench.results import MANIFEST, load_json, make_manifest, save_json

log = logging.getLogger(__name__)

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
    heldout_documents: int = 32
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    on_too_long: str = "truncate"
    seed: int = 0
    device: str = "cpu"
    out: Path = Path("results/run")

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


def run(config: RunConfig, show_progress: bool = True) -> Path:
    """Run the job; return the path of the HTML report."""
    from workbench.report import write_report

    out = Path(config.out)
    corpus = open_corpus(config.corpus, config.translations or None)
    # Cheap checks first: a bad language or an empty selection fails before the model loads.
    corpus.check_languages(config.languages)
    ids = corpus.sample_ids(config.languages, config.heldout_documents, "heldout", config.seed)
    settings = config.settings()
    _check_folder(out, settings)

    model = load_model(config.model, device=config.device)
    manifest = make_manifest(model_source(model), corpus.describe(), config.languages, settings)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        manifest["created"] = load_json(out / MANIFEST)["created"]
    save_json(out / MANIFEST, manifest)

    losses = {
        lang: _loss_for_language(model, corpus, config, lang, ids, out / "parts" / f"loss-{lang}.json", show_progress)
        for lang in config.languages
    }
    LossResult(losses, settings={"split": "heldout", **settings}).save(out)
    return write_report(out)
