"""What a deactivation experiment measured, and the paper's tables made from it (Tables 1-5).

Deltas are "how much worse" than the baseline: loss up, accuracy and fidelity down, so a positive
delta is damage, as the paper's Delta_Eng, Delta_nEng and Delta = Delta_Eng - Delta_nEng.
[`DeactivationResult`][workbench.interventions.deactivation_results.DeactivationResult] holds one
experiment (one kind of neuron set) with its Table 1 and Tables 2-5 forms and the cross-language
matrix; [`AblationResult`][workbench.interventions.deactivation_results.AblationResult] holds the
experiments of every kind side by side and is saved as ``deactivation.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float

from workbench.interventions.measures import Measures, rounded
from workbench.runs.results import Result

MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity", "continuation_fidelity")
"""What every setting measures (the ``measure`` the tables take)."""


@dataclass
class DeactivationResult(Result):
    """Everything one deactivation experiment (one kind of neuron set) measured.

    Saved as part of [`AblationResult`][workbench.interventions.deactivation_results.AblationResult].
    """

    languages: list[str]
    layer_groups: dict[str, int]
    baseline: dict[str, Measures]
    own: dict[str, dict[str, Measures]]  # group -> language -> its own set (in that group) off
    random: dict[str, dict[str, list[Measures]]]  # group -> language -> one per seed
    cross: dict[str, dict[str, Measures]]  # switched-off language -> measured language
    set_sizes: dict[str, dict[str, int]]  # group -> language -> neurons switched off
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------- tables
    def delta(self, measures: Measures, language: str, measure: str = "loss") -> float | None:
        """The damage of ``measures`` over the language's baseline (None: not measured)."""
        return measures.delta(self.baseline[language])[measure]

    def random_delta(self, group: str, language: str, measure: str = "loss") -> tuple[float, float]:
        """Mean and standard deviation over seeds of the random control's delta."""
        values = [self.delta(m, language, measure) for m in self.random[group][language]]
        values = np.array([v for v in values if v is not None], dtype=float)
        if not len(values):
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def table1(self, measure: str = "loss") -> list[dict]:
        """The paper's Table 1 form: per language, its own neurons off vs as many random ones."""
        rows = []
        for lang in self.languages:
            mean, std = self.random_delta("all", lang, measure)
            rows.append(
                {
                    "language": lang,
                    "neurons off": self.set_sizes["all"][lang],
                    f"baseline {measure}": rounded(getattr(self.baseline[lang], measure)),
                    "language-specific: delta": rounded(self.delta(self.own["all"][lang], lang, measure)),
                    "random: delta (mean)": rounded(mean),
                    "random: delta (sd)": rounded(std),
                    "other languages: mean delta": rounded(self.mean_cross_delta(lang, measure)),
                }
            )
        return rows

    def mean_cross_delta(self, switched_off_language: str, measure: str = "loss") -> float:
        """Mean delta over the *other* languages when one language's neurons are off."""
        values = [
            self.delta(m, b, measure)
            for b, m in self.cross[switched_off_language].items()
            if b != switched_off_language
        ]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else math.nan

    def settings_table(self, measure: str = "loss") -> list[dict]:
        """Tables 2-5 form: one row per setting; columns: languages, Delta_Eng, Delta_nEng, Delta.

        A setting is each language with its own set, or random ones of the same counts, in a layer
        group.
        """
        rows = []
        for group in self.own:
            for kind in ("language-specific", "random"):
                deltas = {}
                for lang in self.languages:
                    if kind == "random":
                        deltas[lang] = self.random_delta(group, lang, measure)[0]
                    else:
                        value = self.delta(self.own[group][lang], lang, measure)
                        deltas[lang] = math.nan if value is None else value
                rows.append(
                    {
                        "setting": f"{kind} · {group}",
                        **{k: rounded(v) for k, v in deltas.items()},
                        **{k: rounded(v) for k, v in paper_deltas(deltas).items()},
                    }
                )
        return rows

    def cross_matrix(self, measure: str = "loss") -> Float[np.ndarray, "language language"]:
        """``[switched off, measured]`` deltas (rows: whose neurons are off)."""
        return np.array(
            [
                [
                    self.delta(self.cross[a][b], b, measure)
                    if self.delta(self.cross[a][b], b, measure) is not None
                    else math.nan
                    for b in self.languages
                ]
                for a in self.languages
            ],
            dtype=float,
        )


def paper_deltas(deltas: dict[str, float]) -> dict[str, float]:
    """Delta_Eng, Delta_nEng (mean over non-English languages) and Delta = Delta_Eng - Delta_nEng."""
    d_eng = deltas.get("en", math.nan)
    others = [v for k, v in deltas.items() if k != "en" and not math.isnan(v)]
    d_neng = float(np.mean(others)) if others else math.nan
    return {"Delta_Eng": d_eng, "Delta_nEng": d_neng, "Delta": d_eng - d_neng}


@dataclass
class AblationResult(Result):
    """Deactivation experiments side by side, one per kind of neuron set, on the same verses and baseline.

    The kinds are ``plnd``, ``exclusive`` and ``lape``; the held-out verses and the baseline are
    shared.
    """

    experiments: dict[str, DeactivationResult]
    settings: dict = field(default_factory=dict)

    JSON = "deactivation.json"

    @property
    def languages(self) -> list[str]:
        """The measured languages (the experiments share them)."""
        return next(iter(self.experiments.values())).languages if self.experiments else []

    def comparison(self, measure: str = "loss") -> list[dict]:
        """Per set kind and language: the damage to the language whose neurons are off, and to the others.

        The others' damage is their mean; the set's specificity is the gap between the two.
        """
        rows = []
        for kind, result in self.experiments.items():
            for row in result.table1(measure):
                own, others = row["language-specific: delta"], row["other languages: mean delta"]
                rows.append(
                    {
                        "sets": kind,
                        "language": row["language"],
                        "neurons off": row["neurons off"],
                        "own language: delta": own,
                        "other languages: mean delta": others,
                        "random: delta (mean)": row["random: delta (mean)"],
                        "own minus others": None if own is None or others is None else round(own - others, 4),
                    }
                )
        return rows


__all__ = ["MEASURES", "AblationResult", "DeactivationResult", "paper_deltas"]
