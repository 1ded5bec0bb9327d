"""The ffn slice: FFN detector and combinator statistics per language, layer similarity, report."""

from __future__ import annotations

import random

import numpy as np
import plotly.graph_objects as go
from tqdm.auto import tqdm

from workbench.analyses.ffn.options import Options
from workbench.analyses.ffn.plots import ffn_correlation_figure, ffn_heatmap_figure, ffn_layer_figure, similarity_figure
from workbench.data.batching import tokenize
from workbench.data.corpus import Corpus
from workbench.ffn.collector import summarise
from workbench.ffn.result import FFNResult as Result
from workbench.ffn.similarity import MEASURES, layer_similarity
from workbench.ffn.summary import SUBLAYERS, FFNSummary
from workbench.models.loading import load_model
from workbench.models.model import Model, model_source
from workbench.runs.report import Section
from workbench.runs.store import Store

NAME = Options.ANALYSIS


def _summary(
    model: Model, corpus: Corpus, options: Options, store: Store, lang: str, ids: list[str], pooled: bool, key: str
) -> FFNSummary:
    """One language's FFN summary on ``ids``, saved at once and reused on resume."""

    def compute() -> FFNSummary:
        policy = store.run.length_policy
        tokens = tokenize(model, corpus.parallel([lang], ids)[lang]["text"], ids, on_too_long=policy)
        return summarise(
            model,
            lang,
            tokens,
            ids,
            options.tolerance,
            options.positions,
            options.include_bos,
            pooled,
            store.run.batch_tokens,
        )

    return store.reuse(NAME, key, compute, FFNSummary.load, lambda summary, path: summary.save(path))


def pooled_layers(summaries: dict[str, FFNSummary]) -> dict[str, np.ndarray]:
    """Per sublayer, every verse's layer vectors, languages one after the other."""
    return {sub: np.concatenate([s.pooled[sub] for s in summaries.values()]) for sub in SUBLAYERS}


def run(model: Model, corpus: Corpus, options: Options, store: Store) -> Result:
    """Detectors and combinators per language on parallel analysis verses and on unrelated ones.

    Then layer similarity within the model and against ``options.compare_models``.
    """
    langs, seed = store.languages, store.run.seed
    parallel_ids = corpus.sample_ids(langs, options.documents, "analysis", seed)
    rest = sorted(set(corpus.ids(langs, "analysis")) - set(parallel_ids))
    unrelated_ids = sorted(random.Random(seed + 1).sample(rest, min(options.documents, len(rest))))
    parallel, unrelated = {}, {}
    for lang in tqdm(langs, desc="ffn", unit=" languages", disable=not store.show_progress):
        parallel[lang] = _summary(
            model, corpus, options, store, lang, parallel_ids, True, f"{lang}-parallel.safetensors"
        )
        unrelated[lang] = _summary(
            model, corpus, options, store, lang, unrelated_ids, False, f"{lang}-unrelated.safetensors"
        )
    name = model_source(model).get("name", store.run.model)
    reps = pooled_layers(parallel)
    comparisons = [(name, reps)]
    for index, other in enumerate(options.compare_models):
        other_model = load_model(other, device=store.run.device)
        summaries = {
            lang: _summary(
                other_model, corpus, options, store, lang, parallel_ids, True, f"compare-{index}-{lang}.safetensors"
            )
            for lang in langs
        }
        comparisons.append((model_source(other_model).get("name", other), pooled_layers(summaries)))
        del other_model
    similarity = [
        {
            "a": name,
            "b": other_name,
            "sublayer": sub,
            "measure": measure,
            "matrix": layer_similarity(reps[sub], other_reps[sub], measure).tolist(),
        }
        for other_name, other_reps in comparisons
        for sub in SUBLAYERS
        for measure in MEASURES
    ]
    settings = {
        "split": "analysis",
        **options.to_dict(),
        "parallel_ids": len(parallel_ids),
        "unrelated_ids": len(unrelated_ids),
    }
    return store.keep(NAME, Result.build(parallel, unrelated, similarity, settings))


def figures(result: Result) -> dict[str, go.Figure]:
    """Detectors and combinators per layer, their sharing between languages, and layer similarity."""
    return {
        "ffn_detector_layers": ffn_layer_figure(result, "detector"),
        "ffn_detector_correlation": ffn_correlation_figure(result, "detector"),
        "ffn_detector_heatmap": ffn_heatmap_figure(result, "detector"),
        "ffn_combinator_layers": ffn_layer_figure(result, "combinator"),
        "ffn_combinator_correlation": ffn_correlation_figure(result, "combinator"),
        "ffn_similarity_cka": similarity_figure(result, "cka"),
        "ffn_similarity_rsa": similarity_figure(result, "rsa"),
    }


def verdict(result: Result) -> str:
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


def section(result: Result) -> Section:
    """The report's section: what detectors and combinators are, how they are compared, and the verdict."""
    st = result.settings
    intro = (
        "arXiv 2404.13855: each FFN read as <em>detectors</em> (the first sublayer's activations, "
        "<code>mlp.hook_post</code>) and <em>combinators</em> (the second sublayer's output, before any post-FFN "
        f"norm). {st.get('documents')} analysis verses per language, {st.get('positions')} positions"
        f"{'' if st.get('include_bos') else ' (BOS excluded)'}; a value counts as zero when |a| &le; "
        f"{st.get('tolerance')}. Flatness is the mean entropy of each token's min-max normalised activation row, as a "
        "share of its maximum. Rank correlations compare the units' mean activations between two languages on the "
        "same (translated) verses and on unrelated verses: a high correlation means the languages use the same units; "
        "parallel minus unrelated is what the shared content adds. Layer similarity compares one vector per verse (a "
        "layer's mean over positions) across layers and models."
    )
    return Section(
        "FFN detectors and combinators (arXiv 2404.13855)",
        intro,
        verdict(result),
        list(figures(result).values()),
        [result.table("detector"), result.table("combinator")],
    )
