"""What the zoo shows: the workbench's analyses on every model of a family, side by side.

``workbench zoo compare --preset mixtures --out results/zoo-mixtures`` runs the ordinary job
([`workbench.runs.job`][workbench.runs.job]: lens, PLND, FFN, ...) on each zoo model into
``OUT/NAME/`` (resumable, each with its own full report), then gathers what compares across the
family into [`ZooComparison`][workbench.zoo.compare.ZooComparison] (``OUT/zoo-compare.json``) and
``OUT/report.html``:

* held-out loss per language against that language's share of the training mixture (manifests);
* the logit lens: the English share of the decoded tokens per layer for non-English inputs
  (does a model that saw little or no English still route through English?);
* PLND: how many neurons are specific to each language, and in which layers;
* FFN (2404.13855): layer similarity (CKA) within each model, CKA between the layers of the
  deepest model and each other model on the same verses (what ``ffn --compare-models`` measures),
  and the cross-language correlation of detectors and combinators per layer.

Nothing here recomputes an analysis: it reads the per-model results, so ``workbench zoo compare``
run again only finishes what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from workbench.errors import MissingResultError, WorkbenchError
from workbench.models.catalog import trained
from workbench.runs.options import Options, RunOptions
from workbench.runs.results import Result, read_manifest
from workbench.zoo.mixture import Mixture
from workbench.zoo.presets import PRESETS

DEFAULT_COMPARE_ANALYSES = ("lens", "plnd", "ffn")
"""What ``workbench zoo compare`` runs on each model unless ``--analyses`` says otherwise."""


@dataclass
class ModelFindings:
    """One zoo model's numbers that compare across a family (None: that analysis was not run).

    Attributes:
        name: The zoo model.
        layers: Its depth.
        mixture: Its training mixture, as written.
        shares: Language -> share of the training tokens.
        heldout_loss: Language -> nats per token on held-out verses.
        lens_english: Non-English input -> English share of the decoded top-k, per lens layer (0:
            the embeddings, i: the residual after i blocks).
        lens_input: The same input -> input-language share, per lens layer.
        plnd_sizes: Language -> specific neurons (all structures).
        plnd_exclusive: Language -> those not specific to every language.
        plnd_layers: Language -> specific neurons per layer.
        plnd_total: Neurons of the model PLND ranked.
        ffn_similarity: Sublayer -> CKA between the model's own layers.
        ffn_cross_language: Sublayer -> mean cross-language rank correlation, per layer.
    """

    name: str
    layers: int
    mixture: str
    shares: dict[str, float]
    heldout_loss: dict[str, float]
    lens_english: dict[str, list[float]] | None = None
    lens_input: dict[str, list[float]] | None = None
    plnd_sizes: dict[str, int] | None = None
    plnd_exclusive: dict[str, int] | None = None
    plnd_layers: dict[str, list[int]] | None = None
    plnd_total: int | None = None
    ffn_similarity: dict[str, list[list[float]]] | None = None
    ffn_cross_language: dict[str, list[float]] | None = None

    def english_peak(self) -> tuple[float, int] | None:
        """The highest mean English share over the non-English inputs before the last layer, and its lens layer.

        The lens layer counts the blocks read; None without lens results or non-English inputs.
        """
        if not self.lens_english:
            return None
        mean = np.mean(list(self.lens_english.values()), axis=0)[:-1]
        if not len(mean):
            return None
        return float(mean.max()), int(mean.argmax())

    def adjacent_similarity(self, sublayer: str = "detector") -> float | None:
        """Mean CKA between consecutive layers: near 1 means layers that repeat each other."""
        if not self.ffn_similarity or self.layers < 2:
            return None
        matrix = np.asarray(self.ffn_similarity[sublayer], dtype=float)
        return float(np.mean(np.diag(matrix, 1)))

    def plnd_depth(self, language: str) -> float | None:
        """Where a language's specific neurons sit: their mean layer as a fraction of depth (0 first, 1 last)."""
        if not self.plnd_layers or not sum(self.plnd_layers[language]):
            return None
        counts = np.asarray(self.plnd_layers[language], dtype=float)
        return float((counts * np.arange(len(counts))).sum() / counts.sum() / max(1, len(counts) - 1))


@dataclass
class ZooComparison(Result):
    """A family of zoo models under the same analyses.

    Per model its findings, and the CKA between the layers of the deepest model and every other
    (FFN).
    """

    family: str
    languages: list[str]
    models: list[ModelFindings]
    across: list[dict] = field(default_factory=list)  # {"a", "b", "sublayer", "matrix" [layers a][layers b]}
    settings: dict = field(default_factory=dict)

    JSON = "zoo-compare.json"

    def model(self, name: str) -> ModelFindings:
        """The findings of the model ``name``."""
        return next(m for m in self.models if m.name == name)

    def table(self) -> list[dict]:
        """A row per model: size, mixture, held-out loss, the lens's English peak, PLND sizes, layer redundancy."""
        rows = []
        for m in self.models:
            row = {"model": m.name, "layers": m.layers, "mixture": m.mixture}
            row.update({f"loss {lang}": m.heldout_loss.get(lang) for lang in self.languages})
            peak = m.english_peak()
            if peak is not None:
                row["English peak (non-English inputs)"] = f"{peak[0]:.1%} after {peak[1]} blocks"
            if m.plnd_sizes:
                row["PLND neurons per language"] = ", ".join(f"{k} {v}" for k, v in m.plnd_sizes.items())
            if m.ffn_similarity:
                row["adjacent-layer CKA (detectors)"] = m.adjacent_similarity("detector")
            rows.append(row)
        return rows


def family_names(names: list[str], preset: str | None, zoo: Path | None = None) -> list[str]:
    """The zoo models to compare: ``names`` or a preset's, all trained (an error names the command)."""
    if bool(names) == bool(preset):
        raise WorkbenchError("Give zoo model NAMES or --preset (mixtures, depths), not both and not neither.")
    wanted = list(PRESETS[preset]) if preset else list(dict.fromkeys(names))
    have = trained(zoo)
    missing = [name for name in wanted if name not in have]
    if missing:
        how = f"workbench zoo train --preset {preset}" if preset else f"workbench zoo train {missing[0]} --mixture ..."
        raise MissingResultError(
            f"Not trained yet: {', '.join(missing)} (trained: {', '.join(have) or 'none'}). Train them first: '{how}'."
        )
    return wanted


def family_languages(names: list[str], zoo: Path | None = None) -> tuple[str, ...]:
    """The languages of the family's tokenizers, in order (the natural --languages of a comparison)."""
    have = trained(zoo)
    return tuple(dict.fromkeys(lang for name in names for lang in have[name]["tokenizer"]["languages"]))


def run_family(
    names: list[str],
    run_options: RunOptions,
    analyses: dict[str, Options],
    out: Path,
    show_progress: bool = True,
) -> list[Path]:
    """The job on each model (``OUT/NAME/``, resumable); the reports' paths."""
    from workbench.runs.job import run

    reports = []
    for name in names:
        if show_progress:
            print(f"zoo:{name} -> {out / name}")
        reports.append(run(replace(run_options, model=f"zoo:{name}"), analyses, out / name, show_progress))
    return reports


def gather(names: list[str], out: Path, family: str, zoo: Path | None = None) -> ZooComparison:
    """The comparison from the per-model result folders ``OUT/NAME/`` and the zoo manifests."""
    have = trained(zoo)
    models = [findings(name, have[name], out / name) for name in names]
    first = read_manifest(out / names[0])
    settings = {
        "models": names,
        "run": first["run"],
        "analyses": {k: v["options"] for k, v in first["analyses"].items()},
    }
    return ZooComparison(family, list(first["languages"]), models, across_models(names, models, out), settings)


def findings(name: str, info: dict[str, Any], folder: Path) -> ModelFindings:
    """One model's findings from its manifest and whichever analyses its folder holds."""
    shares = dict(Mixture.parse(info["mixture"], list(info["heldout_loss"])).shares)
    found = ModelFindings(name, info["options"]["layers"], info["mixture"], shares, info["heldout_loss"])
    done = read_manifest(folder).get("analyses", {})
    lens, plnd, ffn = (_load(analysis, folder) if analysis in done else None for analysis in ("lens", "plnd", "ffn"))
    if lens is not None:
        others = {lang: r for lang, r in lens.languages.items() if lang != "en"}
        found.lens_english = {lang: r.share("english") for lang, r in others.items()}
        found.lens_input = {lang: r.share("input") for lang, r in others.items()}
    if plnd is not None:
        exclusive = plnd.named_sets("exclusive")
        found.plnd_sizes = {lang: len(s) for lang, s in plnd.sets.items()}
        found.plnd_exclusive = {lang: len(s) for lang, s in exclusive.items()}
        found.plnd_layers = {lang: [sum(c) for c in zip(*plnd.per_layer(lang).values())] for lang in plnd.sets}
        found.plnd_total = plnd.total_neurons()
    if ffn is not None:
        own = [s for s in ffn.similarity if s["a"] == s["b"] and s["measure"] == "cka"]
        found.ffn_similarity = {s["sublayer"]: s["matrix"] for s in own}
        found.ffn_cross_language = {sub: ffn.cross_language(sub)["parallel"] for sub in found.ffn_similarity}
    return found


def _load(analysis: str, folder: Path):
    """The result of ``analysis`` in ``folder``, as its slice's own ``Result`` class."""
    from workbench.analyses import load_slice

    return load_slice(analysis).Result.load(folder)


def across_models(names: list[str], models: list[ModelFindings], out: Path) -> list[dict]:
    """CKA between the layers of the deepest model (the first, if several) and each other model.

    From the per-verse layer vectors the FFN analysis saved: the same verses in every folder, as the
    job samples them from the same seed.
    """
    from workbench.ffn.similarity import layer_similarity

    if not all(m.ffn_similarity for m in models) or len(models) < 2:
        return []
    reference = max(range(len(models)), key=lambda i: (models[i].layers, -i))
    pooled = {name: _pooled_vectors(out / name) for name in names}
    rows = []
    for i, name in enumerate(names):
        if i == reference:
            continue
        a, b = pooled[names[reference]], pooled[name]
        for sublayer in a:
            rows.append(
                {
                    "a": names[reference],
                    "b": name,
                    "sublayer": sublayer,
                    "matrix": layer_similarity(a[sublayer], b[sublayer], "cka").tolist(),
                }
            )
    return rows


def _pooled_vectors(folder: Path) -> dict[str, np.ndarray]:
    """Per sublayer, ``[verses x languages, layers, units]``: the FFN analysis's parallel verses' layer vectors.

    Languages one after the other, as ``ffn`` compares models.
    """
    from workbench.analyses.ffn.analysis import pooled_layers
    from workbench.ffn.summary import FFNSummary
    from workbench.runs.store import Store

    store = Store.open(folder, show_progress=False)
    # a store opened on a folder has a path for every part
    paths = {lang: cast(Path, store.part("ffn", f"{lang}-parallel.safetensors")) for lang in store.languages}
    return pooled_layers({lang: FFNSummary.load(path) for lang, path in paths.items()})


__all__ = [
    "DEFAULT_COMPARE_ANALYSES",
    "ModelFindings",
    "ZooComparison",
    "family_languages",
    "family_names",
    "gather",
    "run_family",
]
