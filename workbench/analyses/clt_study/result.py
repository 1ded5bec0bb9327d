"""The result of the clt-study slice: the numbers behind each of the paper's claims, and the findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.runs.results import Result as Base


@dataclass
class Finding:
    """One claim of the paper, whether the model bears it out (None: not measurable), and why."""

    claim: str
    holds: bool | None
    evidence: str

    def __post_init__(self) -> None:
        if self.holds is not None:
            self.holds = bool(self.holds)  # numpy's booleans are not ``True``


@dataclass
class Result(Base):
    """The numbers behind each claim, per covered layer, and the findings."""

    JSON = "clt-study.json"

    model: str
    languages: list[str]
    n_layers: int
    layers: list[int]  # the covered layers; every per-layer list below follows them
    fvu: list[float]  # worst over languages
    l0: list[float]  # worst over languages
    loss: dict[str, list[float]]  # language -> [original, replacement] nats per token
    multilingual: list[int]
    specific: list[int]
    identity: list[dict]  # language, feature, layer, own frequency, highest other frequency
    jaccard: list[float]  # mean over items and language pairs (NaN where no graph kept a feature)
    graphs: dict  # graphs, mean replacement and completeness scores, answers at the top
    steering: list[dict]  # per pair: source, target, strength, identity, control, baseline, works
    findings: list[Finding] = field(default_factory=list)
    probe: dict = field(default_factory=dict)  # per residual point accuracy (all, shared), baselines, readable_from
    diff: dict = field(default_factory=dict)  # the fine-tuned language, per layer own vs others' feature change
    settings: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per covered layer: FVU, L0, multilingual and specific features, graph overlap."""
        return [
            {
                "layer": layer,
                "fvu": self.fvu[i],
                "l0": self.l0[i],
                "multilingual": self.multilingual[i],
                "specific": self.specific[i],
                "jaccard": self.jaccard[i],
            }
            for i, layer in enumerate(self.layers)
        ]
