"""Deactivation experiments (MWork verification, METHODS §3; the paper's Tables 1-5).

Switch a language's neurons off (hooks, :mod:`workbench.masking`) and measure what each language
loses on held-out verses, against random neurons drawn with the same count in every layer and
structure. The layers are split as in MWork into *understanding* (the first N), *task-solving*
(the middle; its attention and its FFN count as separate groups) and *generation* (the last M).

Measures per language (:class:`Measures`): next-token loss (nats/token), next-token accuracy,
the *fidelity* of the model's top-1 predictions (teacher-forced: the share of predicted tokens
in the input language among predictions that carry a language label), and optionally the
fidelity of greedy continuations of verse beginnings. Deltas are "how much worse": loss up,
accuracy and fidelity down, so a positive delta is damage, as the paper's Delta_Eng, Delta_nEng
and Delta = Delta_Eng - Delta_nEng.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.batching import DEFAULT_BATCH_TOKENS, iter_batches, pad_id_of
from workbench.masking import switched_off
from workbench.neurons import NeuronDims, NeuronSet, structure_size
from workbench.readout import logits_of_rows, next_token_predictions
from workbench.results import load_json, save_json

GROUPS: tuple[str, ...] = ("all", "understanding", "task_attention", "task_ffn", "generation")
UNDERSTANDING_SHARE = 0.25
GENERATION_SHARE = 0.125
MEASURES: tuple[str, ...] = ("loss", "accuracy", "fidelity", "continuation_fidelity")


@dataclass(frozen=True)
class LayerGroups:
    """MWork's layer split: the first ``understanding`` layers, the last ``generation`` layers,
    and the task-solving layers between them.

    The paper tuned N and M on Chinese XQuAD for 32-layer models (its Appendix F, not in the
    shared text). The defaults here are ours: the first quarter and the last eighth of the depth
    (8 and 4 of 32 layers; 4 and 2 of Gemma 3 270M's 18).
    """

    n_layers: int
    understanding: int
    generation: int

    def __post_init__(self) -> None:
        if self.understanding < 0 or self.generation < 0 or self.understanding + self.generation > self.n_layers:
            raise ValueError(
                f"{self.understanding} understanding + {self.generation} generation layers do not fit "
                f"in {self.n_layers} layers."
            )

    @classmethod
    def default(cls, n_layers: int, understanding: int | None = None, generation: int | None = None) -> LayerGroups:
        u = understanding if understanding is not None else max(1, round(n_layers * UNDERSTANDING_SHARE))
        g = generation if generation is not None else max(1, round(n_layers * GENERATION_SHARE))
        return cls(n_layers, u, g)

    def layers(self, group: str) -> range:
        if group == "all":
            return range(self.n_layers)
        if group == "understanding":
            return range(self.understanding)
        if group == "generation":
            return range(self.n_layers - self.generation, self.n_layers)
        if group in ("task_attention", "task_ffn"):
            return range(self.understanding, self.n_layers - self.generation)
        raise ValueError(f"Unknown layer group {group!r}; choose from {', '.join(GROUPS)}.")

    def restrict(self, neurons: NeuronSet, group: str) -> NeuronSet:
        """The neurons of ``neurons`` in a group's layers (and, for task groups, structures)."""
        layers = self.layers(group)
        keep = {}
        for s, rows in neurons.neurons.items():
            if (group == "task_ffn" and s != "ffn") or (group == "task_attention" and s == "ffn"):
                continue
            keep[s] = rows[(rows[:, 0] >= layers.start) & (rows[:, 0] < layers.stop)]
        return NeuronSet(keep)


def random_like(neurons: NeuronSet, dims, seed: int) -> NeuronSet:
    """Random neurons with the same count in every layer and structure as ``neurons``."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, rows in neurons.neurons.items():
        picked = []
        layers, counts = np.unique(rows[:, 0], return_counts=True)
        for layer, count in zip(layers, counts):
            for index in rng.choice(structure_size(dims, s), size=count, replace=False):
                picked.append((layer, index))
        out[s] = picked
    return NeuronSet(out)


# ----------------------------------------------------------------------------- measures


@dataclass
class Measures:
    """One language under one setting, over its held-out verses."""

    loss: float
    accuracy: float
    fidelity: float  # share of language-labelled top-1 predictions in the input language
    n_tokens: int
    continuation_fidelity: float | None = None

    def delta(self, baseline: Measures) -> dict[str, float | None]:
        """Damage relative to ``baseline``: loss up, accuracy and fidelities down (positive = worse)."""
        out = {
            "loss": self.loss - baseline.loss,
            "accuracy": baseline.accuracy - self.accuracy,
            "fidelity": baseline.fidelity - self.fidelity,
        }
        if self.continuation_fidelity is not None and baseline.continuation_fidelity is not None:
            out["continuation_fidelity"] = baseline.continuation_fidelity - self.continuation_fidelity
        else:
            out["continuation_fidelity"] = None
        return out


def in_language(categories: np.ndarray, language: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean vocabulary masks: tokens of ``language``, and tokens that carry any language label
    (English, the input language, another language), from :func:`token_categories`."""
    from workbench.layer_language import ENGLISH, INPUT, OTHER

    own = categories == (ENGLISH if language == "en" else INPUT)
    labelled = np.isin(categories, (ENGLISH, INPUT, OTHER))
    return own, labelled


@torch.no_grad()
def measure(
    model,
    tokens: Sequence[torch.Tensor],
    own: np.ndarray,
    labelled: np.ndarray,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> Measures:
    """Loss, accuracy and top-1 fidelity of the model (as it is hooked now) over ``tokens``."""
    device = next(model.parameters()).device
    own_t, labelled_t = torch.from_numpy(own).to(device), torch.from_numpy(labelled).to(device)
    loss_sum, correct, n, n_own, n_labelled = 0.0, 0, 0, 0, 0
    for batch in iter_batches(tokens, pad_id_of(model), batch_tokens, device):
        losses, predicted = next_token_predictions(model, batch.tokens)
        real = batch.mask[:, 1:].bool()
        loss_sum += float(losses[real].sum())
        correct += int((predicted == batch.tokens[:, 1:])[real].sum())
        n += int(real.sum())
        n_own += int(own_t[predicted][real].sum())
        n_labelled += int(labelled_t[predicted][real].sum())
    return Measures(loss_sum / max(n, 1), correct / max(n, 1), n_own / max(n_labelled, 1), n)


@torch.no_grad()
def greedy_continuations(model, prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    """``[b, n_new]`` greedy continuations of equal-length ``prompts [b, P]`` (with the hooks
    that are active), reading out only the last position of each step."""
    from transformer_lens import HookedTransformer
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    if not isinstance(model, HookedTransformer):
        out = prompts
        for _ in range(n_new):
            out = torch.cat([out, model(out)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return out[:, prompts.shape[1] :]
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, prompts.device, prompts.shape[0])
    step, generated = prompts, []
    for _ in range(n_new):
        resid = model(step, past_kv_cache=cache, stop_at_layer=model.cfg.n_layers)[:, -1]
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        step = logits_of_rows(model, resid).argmax(-1, keepdim=True)
        generated.append(step)
    return torch.cat(generated, dim=1)


# ----------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class DeactivationOptions:
    """What a deactivation experiment runs (defaults: every group, 3 random seeds)."""

    groups: tuple[str, ...] = GROUPS
    seeds: int = 3
    understanding: int | None = None  # layers; default: a quarter of the depth
    generation: int | None = None  # layers; default: an eighth of the depth
    prompt_tokens: int = 8  # continuation prompts: the first tokens of held-out verses
    new_tokens: int = 16  # greedy continuation length (0: no continuations)
    batch_tokens: int = DEFAULT_BATCH_TOKENS

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or "all" not in self.groups:
            raise ValueError(f"Groups must include 'all' and come from {', '.join(GROUPS)}; got {self.groups}.")
        if self.seeds < 1:
            raise ValueError("Random controls need at least one seed.")


class MeasureMemo:
    """Measurements by key, saved after each one, so an interrupted experiment resumes."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data = load_json(path) if path is not None and path.exists() else {}

    def get(self, key: str, compute):
        if key not in self.data:
            value = compute()
            self.data[key] = asdict(value) if isinstance(value, Measures) else value
            if self.path is not None:
                save_json(self.path, self.data)
        value = self.data[key]
        return Measures(**value) if isinstance(value, dict) and "loss" in value else value


@dataclass
class DeactivationResult:
    """Everything a deactivation experiment measured (all :class:`Measures`)."""

    languages: list[str]
    layer_groups: dict
    baseline: dict[str, Measures]
    own: dict[str, dict[str, Measures]]  # group -> language -> its own set (in that group) off
    random: dict[str, dict[str, list[Measures]]]  # group -> language -> one per seed
    cross: dict[str, dict[str, Measures]]  # switched-off language -> measured language
    set_sizes: dict[str, dict[str, int]]  # group -> language -> neurons switched off
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    JSON = "deactivation.json"

    def to_dict(self) -> dict:
        plain = lambda d: {k: asdict(v) for k, v in d.items()}  # noqa: E731
        return {
            "languages": self.languages, "layer_groups": self.layer_groups,
            "baseline": plain(self.baseline),
            "own": {g: plain(v) for g, v in self.own.items()},
            "random": {g: {lang: [asdict(m) for m in ms] for lang, ms in v.items()} for g, v in self.random.items()},
            "cross": {a: plain(v) for a, v in self.cross.items()},
            "set_sizes": self.set_sizes, "options": self.options, "settings": self.settings,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> DeactivationResult:
        meas = lambda d: {k: Measures(**v) for k, v in d.items()}  # noqa: E731
        return cls(
            languages=data["languages"], layer_groups=data["layer_groups"], baseline=meas(data["baseline"]),
            own={g: meas(v) for g, v in data["own"].items()},
            random={g: {lang: [Measures(**m) for m in ms] for lang, ms in v.items()} for g, v in data["random"].items()},
            cross={a: meas(v) for a, v in data["cross"].items()},
            set_sizes=data["set_sizes"], options=data["options"], settings=data["settings"],
        )  # fmt: skip

    def save(self, folder: Path) -> None:
        save_json(Path(folder) / self.JSON, self.to_dict())

    @classmethod
    def load(cls, folder: Path) -> DeactivationResult:
        return cls.from_dict(load_json(Path(folder) / cls.JSON))

    # ------------------------------------------------------------------------- tables
    def delta(self, measures: Measures, language: str, measure: str = "loss") -> float | None:
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
            rows.append({
                "language": lang,
                "neurons off": self.set_sizes["all"][lang],
                f"baseline {measure}": _round(getattr(self.baseline[lang], measure)),
                "language-specific: delta": _round(self.delta(self.own["all"][lang], lang, measure)),
                "random: delta (mean)": _round(mean),
                "random: delta (sd)": _round(std),
                "other languages: mean delta": _round(self.mean_cross_delta(lang, measure)),
            })  # fmt: skip
        return rows

    def mean_cross_delta(self, switched_off_language: str, measure: str = "loss") -> float:
        """Mean delta over the *other* languages when one language's neurons are off."""
        values = [self.delta(m, b, measure) for b, m in self.cross[switched_off_language].items() if b != switched_off_language]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else math.nan

    def settings_table(self, measure: str = "loss") -> list[dict]:
        """Tables 2-5 form: one row per setting (each language with its own set, or random ones
        of the same counts, in a layer group); columns: languages, Delta_Eng, Delta_nEng, Delta."""
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
                rows.append({"setting": f"{kind} · {group}", **{k: _round(v) for k, v in deltas.items()},
                             **{k: _round(v) for k, v in paper_deltas(deltas).items()}})  # fmt: skip
        return rows

    def cross_matrix(self, measure: str = "loss") -> np.ndarray:
        """``[switched off, measured]`` deltas (rows: whose neurons are off)."""
        return np.array([
            [self.delta(self.cross[a][b], b, measure) if self.delta(self.cross[a][b], b, measure) is not None else math.nan
             for b in self.languages]
            for a in self.languages
        ], dtype=float)  # fmt: skip


def paper_deltas(deltas: dict[str, float]) -> dict[str, float]:
    """Delta_Eng, Delta_nEng (mean over non-English languages) and Delta = Delta_Eng - Delta_nEng."""
    d_eng = deltas.get("en", math.nan)
    others = [v for k, v in deltas.items() if k != "en" and not math.isnan(v)]
    d_neng = float(np.mean(others)) if others else math.nan
    return {"Delta_Eng": d_eng, "Delta_nEng": d_neng, "Delta": d_eng - d_neng}


def _round(value) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def run_deactivation(
    model,
    tokens: dict[str, list[torch.Tensor]],
    sets: dict[str, NeuronSet],
    categories: dict[str, np.ndarray],
    options: DeactivationOptions = DeactivationOptions(),
    checkpoint: Path | None = None,
    settings: dict | None = None,
    progress=None,
) -> DeactivationResult:
    """The whole experiment over ``tokens`` (held-out verses per language): baseline; each
    language's own set (restricted to each layer group) and ``options.seeds`` count-matched
    random controls; the cross-language matrix (each language's whole set off, every language
    measured); greedy-continuation fidelity for the baseline, own and random whole sets.

    ``categories``: per language, :func:`~workbench.layer_language.token_categories`.
    Measurements are saved to ``checkpoint`` as they finish and reused from it.
    """
    langs = list(tokens)
    dims = NeuronDims.of(model)
    groups = LayerGroups.default(dims.n_layers, options.understanding, options.generation)
    memo = MeasureMemo(checkpoint)
    vocab = {lang: in_language(categories[lang], lang) for lang in langs}
    tick = progress or (lambda label: None)

    def run(key: str, lang: str, neurons: NeuronSet | None) -> Measures:
        if neurons is not None and len(neurons) == 0 and not key.startswith("baseline"):
            return Measures(**asdict(baseline[lang]))  # nothing switched off

        def compute():
            tick(key)
            with switched_off(model, neurons):
                return measure(model, tokens[lang], *vocab[lang], options.batch_tokens)

        return memo.get(key, compute)

    own_sets = {g: {lang: groups.restrict(sets[lang], g) for lang in langs} for g in options.groups}
    random_sets = {
        g: {lang: [random_like(own_sets[g][lang], dims, seed) for seed in range(options.seeds)] for lang in langs}
        for g in options.groups
    }  # fmt: skip
    baseline = {lang: run(f"baseline/{lang}", lang, None) for lang in langs}
    cross = {a: {b: run(f"cross/{a}/{b}", b, sets[a]) for b in langs} for a in langs}
    own = {g: {lang: cross[lang][lang] if g == "all" else run(f"own/{g}/{lang}", lang, own_sets[g][lang])
               for lang in langs} for g in options.groups}  # fmt: skip
    random = {
        g: {lang: [run(f"random/{g}/{seed}/{lang}", lang, s) for seed, s in enumerate(random_sets[g][lang])] for lang in langs}
        for g in options.groups
    }  # fmt: skip
    if options.new_tokens > 0:
        prompts = {lang: _prompts(tokens[lang], options.prompt_tokens) for lang in langs}
        for label, per_lang, target in (
            ("baseline", {lang: None for lang in langs}, baseline),
            ("own", {lang: own_sets["all"][lang] for lang in langs}, own["all"]),
        ):
            values = memo.get(f"continuation/{label}", lambda: _continuations(model, prompts, per_lang, vocab, options, tick, label))
            for lang in langs:
                target[lang].continuation_fidelity = values[lang]
        for seed in range(options.seeds):
            per_lang = {lang: random_sets["all"][lang][seed] for lang in langs}
            values = memo.get(f"continuation/random/{seed}", lambda: _continuations(model, prompts, per_lang, vocab, options, tick, f"random {seed}"))
            for lang in langs:
                random["all"][lang][seed].continuation_fidelity = values[lang]
    return DeactivationResult(
        languages=langs, layer_groups=asdict(groups), baseline=baseline, own=own, random=random, cross=cross,
        set_sizes={g: {lang: len(s) for lang, s in own_sets[g].items()} for g in options.groups},
        options=asdict(options), settings=dict(settings or {}),
    )  # fmt: skip


def _prompts(token_lists: list[torch.Tensor], length: int) -> torch.Tensor:
    """The first ``length`` tokens (BOS included) of every verse long enough, as one tensor."""
    rows = [t[:length] for t in token_lists if len(t) > length]
    if not rows:
        return torch.empty(0, length, dtype=torch.long)
    return torch.stack(rows)


def _continuations(model, prompts, per_lang, vocab, options, tick, label) -> dict[str, float | None]:
    """Continuation fidelity of every language at once: one batch, each row with its language's set."""
    tick(f"continuations/{label}")
    langs = [lang for lang in prompts if len(prompts[lang])]
    batch = torch.cat([prompts[lang] for lang in langs]).to(next(model.parameters()).device)
    row_sets = [per_lang[lang] for lang in langs for _ in range(len(prompts[lang]))]
    with switched_off(model, row_sets):
        generated = greedy_continuations(model, batch, options.new_tokens).cpu().numpy()
    out, start = {lang: None for lang in prompts}, 0
    for lang in langs:
        rows = generated[start : start + len(prompts[lang])]
        start += len(prompts[lang])
        own, labelled = vocab[lang]
        n_labelled = int(labelled[rows].sum())
        out[lang] = float(own[rows].sum() / n_labelled) if n_labelled else None
    return out
