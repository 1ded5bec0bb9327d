"""workbench clt-compare: transcoders side by side on the same verses and graph prompts.

A skip transcoder whose affine skip is fitted to the tiny model's MLPs (features silenced) against a
random transcoder: the fitted one reconstructs better and recovers more of the zero-ablation gap.
Each number is checked against the function it wraps, and the gap against a literal zero ablation.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from workbench.cli import main
from workbench.clt.activations import document_rows
from workbench.clt.formats import save_transcoder
from workbench.clt.graphs.attribution import attribute
from workbench.clt.quality import layer_quality, replacement_loss
from workbench.clt.runs.compare import Comparison, compare, gap_recovered, load_checked, zero_ablation_loss
from workbench.clt.runs.compare_options import CompareOptions, TranscoderSpec, graph_prompts, parse_specs
from workbench.clt.runs.compare_report import PAGE, write_page
from workbench.clt.skip import fit_skip, moments_of
from workbench.clt.transcoder import CLTConfig, CrossLayerTranscoder
from workbench.data.batching import iter_batches, pad_id_of, tokenize
from workbench.data.corpus import BibleCorpus
from workbench.models.loading import load_model
from workbench.runs.store import Store

LANGS = ["en", "fr"]


@pytest.fixture(scope="module")
def model():
    """The tiny model trained briefly on Bible verses, so that its MLPs matter to its loss."""
    model = load_model("tiny")
    store = Store.memory(LANGS, show_progress=False)
    docs = [d for docs in store.documents(model, BibleCorpus(), 32, "analysis").values() for d in docs]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        for batch in iter_batches(docs, pad_id_of(model), 2048):
            logits = model(batch.tokens)[:, :-1]
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tokens[:, 1:], reduction="none")
            mask = batch.mask[:, 1:].float()
            optimizer.zero_grad()
            ((ce * mask).sum() / mask.sum()).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def folders(model, tmp_path_factory):
    """Two saved transcoders of the tiny model: ``fitted`` (skip fitted, features off) and ``random``."""
    root = tmp_path_factory.mktemp("transcoders")
    store = Store.memory(LANGS, show_progress=False)
    train = [d for docs in store.documents(model, BibleCorpus(), 16, "analysis").values() for d in docs]
    fitted = CrossLayerTranscoder(CLTConfig(2, 64, 16, per_layer=True, model="tiny", skip=True), seed=1)
    fit_skip(fitted, moments_of(document_rows(model, train, 512)))
    with torch.no_grad():
        fitted.log_threshold.fill_(20.0)  # no feature ever fires: the affine skip alone
    random = CrossLayerTranscoder(CLTConfig(2, 64, 16, model="tiny"), seed=2)
    return {
        "fitted": save_transcoder(fitted, root / "fitted", "workbench")[0],
        "random": save_transcoder(random, root / "random", "workbench")[0],
    }


def _literal_zero_loss(model, documents, layers):
    """Mean next-token loss with the MLP outputs of ``layers`` zeroed, one document at a time."""

    def zero(out, hook):  # every position but BOS
        out = out.clone()
        out[:, 1:] = 0
        return out

    hooks = [(f"blocks.{layer}.hook_mlp_out", zero) for layer in layers]
    total, count = 0.0, 0
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for doc in documents:
            logits = model(doc[None].to(model.cfg.device))[0, :-1]
            total += float(torch.nn.functional.cross_entropy(logits, doc[1:].to(logits.device), reduction="sum"))
            count += len(doc) - 1
    return total / count


def test_compare_ranks_the_fitted_transcoder_first_and_every_number_is_what_it_wraps(model, folders, tmp_path):
    store = Store(tmp_path, Store.memory(LANGS).run, {"clt-compare": "x"}, show_progress=False)
    options = CompareOptions(heldout=4, graph_prompts=1, graph_max_features=64)
    specs = [TranscoderSpec(name, (str(folder),)) for name, folder in folders.items()]
    prompts = graph_prompts(options, LANGS)
    assert {p.language for p in prompts} == set(LANGS) and len({(p.task, p.item) for p in prompts}) == 1

    def load(spec):
        return load_checked(spec, model, "tiny")

    result = compare(model, BibleCorpus(), load, specs, prompts, options, store)
    fitted, random = result.transcoders
    docs = store.documents(model, BibleCorpus(), 4, "heldout")
    for scores in result.transcoders:
        clt = load(TranscoderSpec(scores.name, (str(folders[scores.name]),)))
        for lang in LANGS:
            s = scores.languages[lang]
            assert s.quality == layer_quality(model, clt, docs[lang], 512)
            assert (s.original, s.spliced) == replacement_loss(model, clt, docs[lang], 512)
            literal = _literal_zero_loss(model, docs[lang], [0, 1])
            assert s.zero == pytest.approx(literal, rel=1e-5)
            assert s.recovered == pytest.approx((literal - s.spliced) / (literal - s.original), rel=1e-4)
        assert [(g.task, g.item, g.language) for g in scores.graphs] == [(p.task, p.item, p.language) for p in prompts]
        direct = attribute(model, clt, tokenize(model, [prompts[0].prompt])[0], max_features=64).scores()
        assert (scores.graphs[0].replacement, scores.graphs[0].completeness) == pytest.approx(direct)
    for lang in LANGS:
        assert all(f.fvu < r.fvu for f, r in zip(fitted.languages[lang].quality, random.languages[lang].quality))
        assert fitted.languages[lang].recovered > random.languages[lang].recovered
        assert fitted.languages[lang].recovered > 0.5
    again = Comparison.load(result.save(tmp_path).parent)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())
    page = write_page(again, tmp_path).read_text()
    assert "fitted" in page and "gap recovered" in page and "active features" in page and "plotly" in page.lower()


def test_a_resumed_comparison_reuses_its_parts(model, folders, tmp_path, monkeypatch):
    from workbench.clt.runs import compare as module

    run = Store.memory(LANGS).run
    options = CompareOptions(heldout=2, graph_prompts=0)
    specs = [TranscoderSpec("random", (str(folders["random"]),))]
    first = compare(
        model,
        BibleCorpus(),
        lambda s: load_checked(s, model, "tiny"),
        specs,
        [],
        options,
        Store(tmp_path, run, {"clt-compare": "x"}, show_progress=False),
    )

    def refuse(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(module, "layer_quality", refuse)
    monkeypatch.setattr(module, "zero_ablation_loss", refuse)
    store = Store(tmp_path, run, {"clt-compare": "x"}, show_progress=False)
    second = compare(model, BibleCorpus(), lambda s: load_checked(s, model, "tiny"), specs, [], options, store)
    assert second.transcoders == first.transcoders


def test_gap_recovered_and_zero_ablation_helpers(model):
    assert gap_recovered(2.0, 3.0, 6.0) == pytest.approx(0.75)
    assert math.isnan(gap_recovered(2.0, 2.0, 2.0))
    docs = [torch.tensor([1, 40, 41, 42, 43]), torch.tensor([1, 50, 51])]
    assert zero_ablation_loss(model, [1], docs, 64) == pytest.approx(_literal_zero_loss(model, docs, [1]), rel=1e-5)
    assert zero_ablation_loss(model, [], docs, 64) == pytest.approx(
        replacement_loss(model, CrossLayerTranscoder(CLTConfig(2, 64, 4)), docs, 64)[0], rel=1e-6
    )
    assert not any(model.hook_dict[f"blocks.{layer}.hook_mlp_out"].fwd_hooks for layer in range(2))


def test_the_command_writes_the_table_json_and_page(folders, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["clt-compare", "--model", "tiny", "--languages", "en,fr", "--heldout", "3", "--graph-prompts", "1"]
    args += ["--graph-max-features", "32", "--out", str(out), "--quiet"]
    args += ["--transcoders", f"fitted={folders['fitted']}", "--transcoders", f"random={folders['random']}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "fitted" in printed and "random" in printed and "compare.html" in printed
    result = Comparison.load(out)
    assert [t.name for t in result.transcoders] == ["fitted", "random"]
    assert result.settings["heldout"] == 3 and result.run["languages"] == ["en", "fr"]
    assert result.versions["workbench"] and result.model["spec"] == "tiny"
    assert (out / PAGE).is_file()
    _draws_in_a_browser(out / PAGE)


def _draws_in_a_browser(page):
    """Debian's headless Chromium (what `make test` installs) opens the page offline and plotly draws
    every figure: three charts (nine SVG layers) and the four tables."""
    import subprocess

    from workbench.runs.images import find_browser

    command = [find_browser(), "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run([*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 9 and dom.count("<table") >= 4


@pytest.mark.parametrize(
    "extra, expected",
    [
        ([], "Name the transcoders"),
        (["--transcoders", "a={good}", "--transcoders", "a={good}"], "given twice"),
        (["--transcoders", "a=/nonexistent/clt"], "No transcoder at /nonexistent/clt"),
        (["--transcoders", "{good}"], "NAME=PATH"),
        (["--transcoders", "a b={good}"], "letters, digits"),
        (["--transcoders", "a={good}", "--languages", "sw", "--graph-prompts", "1"], "--graph-prompts 0"),
        (["--transcoders", "a={good}", "--heldout", "0"], "at least 1"),
    ],
)
def test_bad_input_is_refused_before_anything_loads(folders, tmp_path, capsys, extra, expected):
    extra = [e.format(good=folders["random"]) for e in extra]
    assert main(["clt-compare", "--model", "tiny", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error:") and expected in err


def test_a_transcoder_of_another_model_or_format_is_refused(folders, tmp_path, capsys):
    wide = save_transcoder(CrossLayerTranscoder(CLTConfig(2, 32, 4)), tmp_path / "wide", "workbench")[0]
    (tmp_path / "empty").mkdir()
    for spec, expected in (
        (f"wide={wide}", "2 layers of width 32"),
        (f"empty={tmp_path / 'empty'}", "no transcoder format"),
    ):
        args = ["clt-compare", "--model", "tiny", "--languages", "en", "--graph-prompts", "0", "--heldout", "1"]
        assert main([*args, "--transcoders", f"ok={folders['random']}", "--transcoders", spec]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Transcoder" in err
    assert not (tmp_path / "compare.json").exists()


def test_refusals_come_before_torch_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from workbench.cli import main\n"
        f"assert main(['clt-compare', '--transcoders', 'a=/nonexistent', '--out', {str(tmp_path)!r}]) == 2\n"
        "assert main(['clt-compare', '--transcoders', 'a=.', '--transcoders', 'a=.']) == 2\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_parse_specs_keeps_several_saelens_folders(tmp_path):
    (tmp_path / "l0").mkdir()
    (tmp_path / "l1").mkdir()
    specs = parse_specs([f"sae={tmp_path / 'l0'}, {tmp_path / 'l1'}"])
    assert specs == [TranscoderSpec("sae", (str(tmp_path / "l0"), str(tmp_path / "l1")))]


def test_a_bridged_model_is_refused_for_graphs_with_the_way_out(folders, tmp_path, capsys):
    from conftest import BRIDGED, save_tiny_hf

    save_tiny_hf(BRIDGED, tmp_path / "bridged")
    args = ["clt-compare", "--model", str(tmp_path / "bridged"), "--languages", "en", "--out", str(tmp_path / "o")]
    assert main([*args, "--transcoders", f"a={folders['random']}"]) == 2
    err = capsys.readouterr().err
    assert "HookedTransformer" in err and "--graph-prompts 0" in err
