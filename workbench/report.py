"""The self-contained HTML report of a results folder.

The report is rebuilt from the files in the folder (never from objects in memory), so it can be
regenerated at any time with ``workbench report FOLDER``. plotly.js is embedded once, so the
file opens offline in any browser. Each analysis contributes a section through a function in
:data:`SECTIONS` that returns ``None`` when its results are absent.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench.deactivation import DeactivationResult
from workbench.enhancement import EnhancementResult
from workbench.ffn import SUBLAYERS, FFNResult
from workbench.layer_language import LensResult
from workbench.perplexity import LossResult
from workbench.plnd import PLNDResult
from workbench.plots import (
    cross_language_figure,
    deactivation_figure,
    enhancement_figure,
    enhancement_matrix_figure,
    ffn_correlation_figure,
    ffn_heatmap_figure,
    ffn_layer_figure,
    lens_mass_figure,
    lens_share_figure,
    loss_figure,
    overlap_figure,
    plnd_layer_figure,
    settings_figure,
    similarity_figure,
    training_curve_figure,
)
from workbench.results import MANIFEST, atomic_write_bytes, load_json

REPORT = "report.html"


@dataclass
class Section:
    """One part of the report: a title, explanatory HTML, figures and tables."""

    title: str
    intro: str = ""
    figures: list[go.Figure] = field(default_factory=list)
    tables: list[list[dict]] = field(default_factory=list)


def html_table(rows: list[dict]) -> str:
    """A plain HTML table from a list of same-keyed dicts."""
    if not rows:
        return "<p><em>No rows.</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def loss_section(folder: Path) -> Section | None:
    if not (folder / LossResult.JSON).exists():
        return None
    result = LossResult.load(folder)
    n_docs = next(iter(result.languages.values())).n_documents if result.languages else 0
    intro = (
        f"Mean next-token cross-entropy (nats per token) on {n_docs} held-out verses per language. "
        "The verses are the <em>same</em> verses in every language (the corpus is aligned), so "
        "differences reflect the language, its tokenisation and the translation, not the content. "
        "Error bars: 95% bootstrap intervals over verses. Loss per token depends on how finely "
        "the tokenizer cuts each script; bits per UTF-8 byte of the same text does not, so the "
        "right panel is the fairer comparison between languages. This is the baseline for the "
        "deactivation and fine-tuning experiments."
    )
    return Section("Per-language loss on held-out parallel verses", intro, [loss_figure(result)], [result.table()])


def lens_section(folder: Path) -> Section | None:
    if not (folder / LensResult.JSON).exists():
        return None
    result = LensResult.load(folder)
    settings = result.settings
    first = next(iter(result.languages.values()))
    intro = (
        "Every layer's residual stream decoded through the final norm and the unembedding "
        f"(logit lens; final norm {'on' if settings.get('lens_final_norm', True) else 'off'}), at "
        f"{first.n_positions} positions of {first.n_documents} aligned verses per language "
        f"(top-{first.k} tokens each). Each decoded token is labelled English, input language, "
        "other language, ambiguous (a word of English and another language) or none "
        "(punctuation, digits, sub-word fragments), from word-frequency lists (wordfreq; Bible "
        "word counts where wordfreq has no list) and the script. MWork (Zhao et al. 2024) reports "
        "non-English tokens early, English in the middle layers, and the input language again at "
        "the end. The second figure shows the probability mass on English vs input-language "
        "tokens (Wendler et al. 2024), with 95% bootstrap bands over verses. The last table gives "
        "the token classifier's precision and recall on held-out verses of known language."
    )
    return Section(
        "Logit lens: the language of every layer",
        intro,
        [lens_share_figure(result), lens_mass_figure(result)],
        [result.table(), result.accuracy],
    )


def plnd_section(folder: Path) -> Section | None:
    if not (folder / PLNDResult.JSON).exists():
        return None
    result = PLNDResult.load(folder)
    sel = result.selection
    n_docs = max((d["n_documents"] for d in result.documents.values()), default=0)
    rule = {
        "top_fraction": f"among the top {sel.value:.2%} of its layer and structure",
        "top_k": f"among the top {int(sel.value)} of its layer and structure",
        "threshold": f"with importance at least {sel.value:g}",
    }[sel.rule]
    intro = (
        "PLND (Zhao et al. 2024): the importance of a neuron for a document is how much its "
        "sublayer's output changes over the document when the neuron is zeroed (for Q and K, the "
        "paper's approximation: the change of the attention pattern), computed for all neurons "
        f"at once with hooks. A neuron counts as activated for a document when it is {rule}; it "
        f"is specific to a language when activated for {sel.specificity:.0%} of the language's "
        f"{n_docs} aligned verses{' and not specific to every language' if sel.exclusive else ''}. "
        "FFN, V and O importances measure the sublayer output before any post-sublayer norm. "
        "Stability is the Jaccard index between the sets found on the even and on the odd half "
        "of the verses. LAPE (Tang et al. 2024) is a second detector from the same forward "
        "passes, over FFN neurons only; the last columns compare it with PLND's FFN set."
    )
    return Section(
        "PLND: language-specific neurons", intro,
        [plnd_layer_figure(result), overlap_figure(result)], [result.table()],
    )  # fmt: skip


def deactivation_section(folder: Path) -> Section | None:
    if not (folder / DeactivationResult.JSON).exists():
        return None
    result = DeactivationResult.load(folder)
    groups, opts = result.layer_groups, result.options
    sets = {"plnd": "PLND's language-specific sets", "exclusive": "PLND's sets minus the neurons every "
            "language shares", "lape": "LAPE's sets"}.get(result.settings.get("neuron_sets"), "the given sets")  # fmt: skip
    intro = (
        f"Each language's neurons ({sets}) are switched off with hooks (the same as zeroing their "
        "parameters; no weight is edited) and the model is measured on "
        f"{result.settings.get('documents', '?')} held-out verses per language. Random controls "
        f"switch off as many neurons in every layer and structure ({opts.get('seeds')} seeds: mean, "
        "with the standard deviation as error bar). Deltas are damage: loss increase in nats per "
        "token, accuracy and fidelity drops. <em>Fidelity</em> is the share of the model's top-1 "
        "predictions (and of greedy continuations of verse beginnings) that are in the input "
        "language, among those with a language label. Layer groups (MWork): understanding = the first "
        f"{groups['understanding']} layers, generation = the last {groups['generation']}, task-solving "
        "= the layers between (attention and FFN separately). The verdict below is computed from "
        "the numbers, whatever they show."
    )
    return Section(
        "Deactivation: switching language-specific neurons off", intro + "<br><br>" + html.escape(verdict(result)),
        [deactivation_figure(result), cross_language_figure(result), settings_figure(result)],
        [result.table1("loss"), result.table1("accuracy"), result.table1("fidelity"), continuation_table(result)],
    )  # fmt: skip


def verdict(result: DeactivationResult) -> str:
    """Plain sentences computed from the numbers (no claim the data do not make)."""
    rows = result.table1("loss")
    own = [r["language-specific: delta"] or 0.0 for r in rows]
    others = [r["other languages: mean delta"] or 0.0 for r in rows]
    beats_random = [r["language"] for r, d in zip(rows, own)
                    if d > 2 * max(r["random: delta (mean)"] or 0, 0) + 2 * (r["random: delta (sd)"] or 0)]  # fmt: skip
    beats_others = [r["language"] for r, d, o in zip(rows, own, others) if d > o]
    n, mean_own, mean_others = len(rows), sum(own) / max(len(own), 1), sum(others) / max(len(others), 1)
    share = f"{mean_others / mean_own:.0%}" if mean_own > 0 else "n/a"
    return (
        f"With its own neurons off, a language's loss rose more than twice as much as with random neurons "
        f"(beyond 2 sd) for {len(beats_random)} of {n} languages ({', '.join(beats_random) or 'none'}), and more "
        f"than the other languages' loss for {len(beats_others)} of {n} ({', '.join(beats_others) or 'none'}). "
        f"On average the own language's loss rose by {mean_own:.3g} nats/token and the other languages' by "
        f"{mean_others:.3g} ({share} of it): the closer to 100%, the less language-specific the effect."
    )


def continuation_table(result: DeactivationResult) -> list[dict]:
    """Greedy-continuation fidelity: baseline, own neurons off, random neurons off (mean)."""
    rows = []
    for lang in result.languages:
        randoms = [m.continuation_fidelity for m in result.random["all"][lang] if m.continuation_fidelity is not None]
        rows.append({
            "language": lang,
            "continuation fidelity: baseline": result.baseline[lang].continuation_fidelity,
            "own neurons off": result.own["all"][lang].continuation_fidelity,
            "random neurons off (mean)": sum(randoms) / len(randoms) if randoms else None,
        })  # fmt: skip
    return rows


def finetune_section(folder: Path) -> Section | None:
    if not (folder / EnhancementResult.JSON).exists():
        return None
    result = EnhancementResult.load(folder)
    options, train = result.options, result.options.get("train", {})
    n_docs = result.settings.get("documents", "?")
    intro = (
        "MWork Figure 4 and Table 6: only the parameters of a language's neurons are trained (causal-LM loss, "
        f"AdamW, lr {train.get('lr')}, {train.get('epochs')} epoch(s), gradient clipping {train.get('max_grad_norm')}) on "
        f"{', '.join(str(n) for n in options.get('sizes', []))} of its verses (nested random samples of the analysis "
        "split, none of them a PLND verse), and as many random neurons (same count per layer and structure) on "
        f"{options.get('random_size')}. Every listed language is then measured on the same {n_docs} held-out verses. "
        "Gains are improvements: loss down, accuracy up. Every other parameter is bit-for-bit the base model's "
        "(tested); each run's trained entries are saved in <code>finetune/</code> and <code>workbench export</code> "
        f"writes a full model.<br><strong>{html.escape(enhancement_verdict(result))}</strong>"
    )
    figures = [enhancement_figure(result, "loss"), enhancement_matrix_figure(result, "loss"),
               enhancement_figure(result, "accuracy"), training_curve_figure(result)]  # fmt: skip
    return Section("Enhancing a language by training only its neurons (MWork Fig. 4, Table 6)", intro, figures,
                   [result.table("loss"), result.table("accuracy")])  # fmt: skip


def enhancement_verdict(result: EnhancementResult) -> str:
    """One sentence per target, computed from the numbers: the target's gain with its own
    neurons against the other languages' and the random control's, at the control's size."""
    sentences = []
    for target in result.targets:
        randoms = [r for r in result.runs if r.target == target and r.kind == "random"]
        size = randoms[0].size if randoms else max(r.size for r in result.runs if r.target == target)
        own = [r for r in result.runs if r.target == target and r.kind == "language" and r.size == size]
        if not own:
            continue
        run = own[0]
        text = (f"{target}, {run.neurons} neurons on {size} documents: {target} loss "
                f"{-result.gain(run, target):+.3f} nats/token, other languages {-result.others_gain(run):+.3f} (mean)")  # fmt: skip
        if "en" in result.languages and target != "en":
            text += f", en {-result.gain(run, 'en'):+.3f}"
        if randoms:
            text += f"; as many random neurons: {target} {-result.gain(randoms[0], target):+.3f}"
        sentences.append(text + ".")
    return " ".join(sentences)


def ffn_section(folder: Path) -> Section | None:
    if not (folder / FFNResult.JSON).exists():
        return None
    result = FFNResult.load(folder)
    st = result.settings
    intro = (
        "arXiv 2404.13855 (METHODS §5): each FFN read as <em>detectors</em> (the first sublayer's activations, "
        "<code>mlp.hook_post</code>) and <em>combinators</em> (the second sublayer's output, before any post-FFN norm). "
        f"{st.get('documents')} analysis verses per language, {st.get('positions')} positions"
        f"{'' if st.get('include_bos') else ' (BOS excluded)'}; a value counts as zero when |a| &le; {st.get('tolerance')}. "
        "Flatness is the mean entropy of each token's min-max normalised activation row, as a share of its maximum. "
        "Rank correlations compare the units' mean activations between two languages on the same (translated) verses "
        "and on unrelated verses: a high correlation means the languages use the same units; parallel minus unrelated "
        "is what the shared content adds. Layer similarity compares one vector per verse (a layer's mean over positions) "
        f"across layers and models.<br><strong>{html.escape(ffn_verdict(result))}</strong>"
    )
    figures = [ffn_layer_figure(result, "detector"), ffn_correlation_figure(result, "detector"),
               ffn_heatmap_figure(result, "detector"), ffn_layer_figure(result, "combinator"),
               ffn_correlation_figure(result, "combinator"), similarity_figure(result, "cka"),
               similarity_figure(result, "rsa")]  # fmt: skip
    return Section("FFN detectors and combinators (arXiv 2404.13855)", intro, figures,
                   [result.table("detector"), result.table("combinator")])  # fmt: skip


def ffn_verdict(result: FFNResult) -> str:
    """How the sharing of detectors and combinators between languages changes with depth, from the numbers."""
    parts = []
    for sub in SUBLAYERS:
        cross = result.cross_language(sub)
        par = np.array(cross["parallel"], dtype=float)
        if np.isnan(par).all():
            continue
        peak = int(np.nanargmax(par))
        parts.append(
            f"{sub}s: mean cross-language rank correlation on parallel verses {par[0]:.2f} at layer 0, "
            f"{par[peak]:.2f} at its peak (layer {peak}), {par[-1]:.2f} at layer {len(par) - 1}; a language against "
            f"itself on other verses {np.nanmin(cross['same language']):.2f}-{np.nanmax(cross['same language']):.2f}; "
            f"parallel minus unrelated {np.nanmin(cross['difference']):+.3f} to {np.nanmax(cross['difference']):+.3f}"
        )
    return "; ".join(parts) + "." if parts else "Only one language: no cross-language comparison."


SECTIONS: list[Callable[[Path], Section | None]] = [
    loss_section, lens_section, plnd_section, deactivation_section, finetune_section, ffn_section,
]  # fmt: skip


def _header(manifest: dict) -> str:
    model, corpus = manifest.get("model", {}), manifest.get("corpus", {})
    rows = [
        ("Model", f"{model.get('name', '?')} (spec {model.get('spec', '?')}, route {model.get('route', '?')})"),
        ("Weights", model.get("weights", "?")),
        ("Corpus", corpus.get("name", "?")),
        ("Languages", ", ".join(manifest.get("languages", []))),
        ("Created", manifest.get("created", "?")),
        ("Versions", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
    ]
    meta = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    translations = corpus.get("translations")
    trans_html = ""
    if translations:
        trans_rows = [{"language": k, "translation": v["name"], "code": v["code"]} for k, v in translations.items()]
        trans_html = "<details><summary>Translations used</summary>" + html_table(trans_rows) + "</details>"
    settings = html.escape(str(manifest.get("settings", {})))
    return (
        f"<table class='meta'>{meta}</table>{trans_html}"
        f"<details><summary>Settings</summary><pre>{settings}</pre></details>"
    )


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f5f5f5} table.meta th{width:8em} pre{background:#f8f8f8;padding:.6em;overflow-x:auto}
"""


def render(manifest: dict, sections: list[Section]) -> str:
    """The whole report as one HTML string (plotly.js inlined)."""
    parts = []
    for section in sections:
        figs = "".join(
            fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True})
            for fig in section.figures
        )
        tables = "".join(html_table(t) for t in section.tables)
        parts.append(f"<section><h2>{html.escape(section.title)}</h2><p>{section.intro}</p>{figs}{tables}</section>")
    title = f"Multilingual workbench report: {manifest.get('model', {}).get('name', '')}"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{_header(manifest)}{''.join(parts)}</body></html>"
    )


def write_report(folder: Path) -> Path:
    """Build ``report.html`` in ``folder`` from the results saved there; return its path."""
    folder = Path(folder)
    manifest = load_json(folder / MANIFEST)
    sections = [s for s in (make(folder) for make in SECTIONS) if s is not None]
    path = folder / REPORT
    atomic_write_bytes(path, render(manifest, sections).encode("utf-8"))
    return path
