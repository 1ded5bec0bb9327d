"""The model zoo: mixtures, the training plan, training (loss falls, seeded, exact resume), the
saved Hugging Face folder as a HookedTransformer, and analyses on a zoo model. Tiny models, a
few steps, two small languages: seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.data.corpora.base import split_of
from workbench.data.corpus import BibleCorpus
from workbench.errors import UnknownLanguageError, UnknownModelError
from workbench.models.catalog import trained
from workbench.models.model import source_of
from workbench.zoo.checkpoint import ZooExistsError
from workbench.zoo.data import BudgetError, SequencePlan, training_verses
from workbench.zoo.mixture import Mixture, MixtureError
from workbench.zoo.options import ZooOptions
from workbench.zoo.presets import PRESETS
from workbench.zoo.train import train

LANGS = ["ar", "de", "en", "fr", "zh"]
TINY = dict(
    mixture="ar=0.75,zh=0.25",
    layers=1,
    d_model=32,
    heads=2,
    d_mlp=64,
    context=64,
    vocab_size=400,
    tokens=64 * 8 * 8,
    batch_tokens=64 * 8,
    lr=1e-2,
    warmup=2,
    heldout_verses=8,
    checkpoint_every=1,
)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A zoo folder with the tiny model ``tiny-mix`` trained in it (the cache points there)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE", str(root))
        train("tiny-mix", ZooOptions(**TINY), show_progress=False)
        yield root / "zoo"


def test_mixture_is_checked_and_normalised():
    mixture = Mixture.parse("en=2, fr=1,de=1,zh=0", LANGS)
    assert mixture.shares == (("en", 0.5), ("fr", 0.25), ("de", 0.25), ("zh", 0.0))
    assert mixture.trained == ["en", "fr", "de"] and mixture.languages == ["en", "fr", "de", "zh"]
    with pytest.raises(UnknownLanguageError, match="xx.*Languages: ar \\(Arabic\\)"):
        Mixture.parse("en=1,xx=1", LANGS)
    for bad, message in [
        ("en=0,fr=0", "sum to 0"),
        ("en=-1,fr=2", ">= 0"),
        ("en", "LANGUAGE=SHARE"),
        ("en=1,en=2", "twice"),
        ("en=lots", "not a number"),
        ("", "Empty"),
    ]:
        with pytest.raises(MixtureError, match=message):
            Mixture.parse(bad, LANGS)


def test_presets_are_the_papers_designs():
    shares = {name: Mixture.parse(o["mixture"], LANGS) for name, o in PRESETS["mixtures"].items()}
    assert [round(m.share("en"), 6) for m in shares.values()] == [0.9, 0.7, 0.5, 0.2, 0.0]
    assert all(m.share("zh") == pytest.approx((1 - m.share("en")) / 4) for m in shares.values())
    assert [o["layers"] for o in PRESETS["depths"].values()] == [2, 4, 8]


def test_plan_follows_the_mixture_and_refuses_silent_repeats():
    mixture = Mixture.parse("en=0.5,fr=0.3,zh=0.2,de=0", LANGS)
    plan = SequencePlan.build(mixture, {"en": 10**6, "fr": 10**6, "zh": 10**6}, 100, 1000, seed=0)
    counts = plan.sequences_per_language()
    assert counts == {"en": 500, "fr": 300, "zh": 200}
    for prefix in (7, 50, 333):  # every prefix within one sequence of its share
        seen = np.bincount(plan.language_of[:prefix], minlength=3)
        assert np.all(np.abs(seen - prefix * np.array([0.5, 0.3, 0.2])) <= 1)
    windows = [plan.window(0, k) for k in range(500)]
    assert len(set(windows)) == 500  # no window read twice within a pass
    with pytest.raises(BudgetError, match="en 2.50 passes.*--max-epochs 2.50"):
        SequencePlan.build(mixture, {"en": 20_000, "fr": 10**6, "zh": 10**6}, 100, 1000, seed=0)
    assert (
        SequencePlan.build(mixture, {"en": 20_000, "fr": 10**6, "zh": 10**6}, 100, 1000, 0, max_epochs=3).epochs()["en"]
        == 2.5
    )


def test_no_heldout_verse_is_trained_on_in_any_translation():
    corpus = BibleCorpus()
    heldout = {i for i in corpus.texts("fr") if split_of(i, corpus.heldout_fraction) == "heldout"}
    used = training_verses("fr")
    translations = {key.split(":")[0] for key, _ in used}
    assert translations == {"l", "o", "5"}  # every French translation
    assert heldout and not heldout & {key.split(":")[1] for key, _ in used}


def test_training_lowers_the_loss_and_the_manifest_says_what_it_did(zoo):
    info = json.loads((zoo / "tiny-mix" / "zoo.json").read_text())
    losses = info["losses"]
    assert len(losses) == info["steps"] == 8
    assert np.mean(losses[-2:]) < losses[0] - 0.5
    shares = {lang: n / info["tokens"]["total"] for lang, n in info["tokens"]["per_language"].items()}
    assert shares == pytest.approx({"ar": 0.75, "zh": 0.25}, abs=0.01)  # stated tolerance: 1 point
    assert set(info["heldout_loss"]) == {"ar", "zh"} and info["mixture"] == "ar=0.75,zh=0.25"
    assert info["versions"]["torch"] and info["tokenizer"]["languages"] == ["ar", "zh"]
    assert "tiny-mix" in trained(zoo)


def test_same_seed_same_weights_and_resume_equals_uninterrupted(zoo, monkeypatch, tmp_path):
    from safetensors.torch import load_file

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    reference = load_file(zoo / "tiny-mix" / "model.safetensors")

    def stop_at_5(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("again", ZooOptions(**TINY), show_progress=False, on_step=stop_at_5)
    assert not (zoo / "again").exists() and (zoo / ".again.partial" / "checkpoint.pt").exists()
    resumed_from = []
    train("again", ZooOptions(**TINY), show_progress=False, on_step=lambda step, loss: resumed_from.append(step))
    assert resumed_from[0] == 6  # steps 1-5 came from the checkpoint
    again = load_file(zoo / "again" / "model.safetensors")
    assert again.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(again[name], reference[name], rtol=0, atol=0)
    assert (
        json.loads((zoo / "again" / "zoo.json").read_text())["losses"]
        == json.loads((zoo / "tiny-mix" / "zoo.json").read_text())["losses"]
    )


def test_taken_names_and_other_settings_are_refused(zoo, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    with pytest.raises(ZooExistsError, match="--force"):
        train("tiny-mix", ZooOptions(**TINY), show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(
            "half",
            ZooOptions(**TINY),
            show_progress=False,
            on_step=lambda s, _: (_ for _ in ()).throw(KeyboardInterrupt),
        )
    with pytest.raises(ZooExistsError, match="other settings"):
        train("half", ZooOptions(**{**TINY, "seed": 1}), show_progress=False)


def test_zoo_model_loads_as_hooked_transformer_with_hf_logits(zoo, monkeypatch):
    from transformers import AutoModelForCausalLM

    from workbench.models.loading import load_model

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    model = load_model("zoo:tiny-mix")
    assert source_of(model).route == "zoo" and model.cfg.positional_embedding_type == "rotary"
    tokens = model.to_tokens("في البدء خلق الله السماوات والأرض")
    assert tokens[0, 0] == model.tokenizer.bos_token_id and tokens[0, 1] != model.tokenizer.bos_token_id
    hf = AutoModelForCausalLM.from_pretrained(str(zoo / "tiny-mix")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(UnknownModelError, match="trained: .*tiny-mix.*workbench zoo train"):
        load_model("zoo:missing")


def test_analyses_run_on_a_zoo_model(zoo, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--model",
                "zoo:tiny-mix",
                "--languages",
                "ar,zh",
                "--analyses",
                "loss,plnd,ablate,finetune",
                "--loss-documents",
                "4",
                "--plnd-documents",
                "4",
                "--ablate-documents",
                "2",
                "--ablate-new-tokens",
                "2",
                "--finetune-sizes",
                "4",
                "--finetune-random-size",
                "0",
                "--finetune-documents",
                "2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    for name in ("plnd", "deactivation", "finetune"):
        assert json.loads((out / f"{name}.json").read_text())
    assert (out / "report.html").exists()
    assert json.loads((out / "manifest.json").read_text())["model"]["route"] == "zoo"
    assert main(["zoo", "list"]) == 0
    assert "tiny-mix" in capsys.readouterr().out


def test_cli_refuses_bad_input_before_training(tmp_path, capsys):
    assert main(["zoo", "train", "x", "--mixture", "en=1,xx=1", "--zoo", str(tmp_path), "--quiet"]) == 2
    assert "No training text for xx" in capsys.readouterr().err
    assert main(["zoo", "train", "--zoo", str(tmp_path)]) == 2
    assert "NAME or --preset" in capsys.readouterr().err
    assert main(["zoo", "train", "x", "--d-model", "30", "--heads", "4", "--zoo", str(tmp_path)]) == 2
    assert "not a multiple" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _flags(options: dict) -> list[str]:
    return [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def test_same_settings_under_another_name_are_copied_not_retrained(zoo, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    assert main(["zoo", "train", "tiny-twin", *_flags(TINY), "--quiet"]) == 0
    assert "copied, not retrained" in capsys.readouterr().out
    info = json.loads((zoo / "tiny-twin" / "zoo.json").read_text())
    assert info["name"] == "tiny-twin" and info["copy_of"] in {"tiny-mix", "again"}  # "again": an earlier test's twin
    assert (zoo / "tiny-twin" / "model.safetensors").read_bytes() == (
        zoo / "tiny-mix" / "model.safetensors"
    ).read_bytes()


def test_compare_a_family_and_hold_its_cka_to_ffn_compare_models(zoo, monkeypatch, tmp_path):
    """``zoo compare`` on two tiny models of different mixture and depth: every finding is there,
    and its CKA between the models' layers equals what ``ffn --compare-models`` measures."""
    from workbench.zoo.compare import ZooComparison

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    train("tiny-deep", ZooOptions(**{**TINY, "mixture": "ar=0.25,zh=0.75", "layers": 2}), show_progress=False)
    out = tmp_path / "family"
    small = ["--lens-documents", "4", "--lens-accuracy-documents", "4", "--plnd-documents", "4", "--ffn-documents", "4"]
    assert main(["zoo", "compare", "tiny-mix", "tiny-deep", *small, "--out", str(out), "--quiet"]) == 0
    comparison = ZooComparison.load(out)
    assert comparison.languages == ["ar", "zh"] and [m.layers for m in comparison.models] == [1, 2]
    shallow, deep = comparison.models
    assert shallow.shares == {"ar": 0.75, "zh": 0.25} and deep.shares == {"ar": 0.25, "zh": 0.75}
    assert set(deep.lens_english) == {"ar", "zh"} and len(deep.lens_english["zh"]) == 3  # embeddings, then each block
    assert set(deep.plnd_sizes) == {"ar", "zh"} and len(deep.plnd_layers["ar"]) == 2
    assert np.asarray(deep.ffn_similarity["detector"]).shape == (2, 2)
    assert [(s["a"], s["b"], s["sublayer"]) for s in comparison.across] == [
        ("tiny-deep", "tiny-mix", "detector"),
        ("tiny-deep", "tiny-mix", "combinator"),
    ]
    html = (out / "report.html").read_text()
    assert "held-out loss vs mixture" in html and "FFN layers across the family" in html
    assert main(["report", str(out)]) == 0

    direct = tmp_path / "direct"
    assert (
        main(
            [
                "ffn",
                "--model",
                "zoo:tiny-deep",
                "--languages",
                "ar,zh",
                "--documents",
                "4",
                "--compare-models",
                "zoo:tiny-mix",
                "--out",
                str(direct),
                "--quiet",
            ]
        )
        == 0
    )
    ffn = json.loads((direct / "ffn.json").read_text())
    for sublayer in ("detector", "combinator"):
        measured = next(
            s["matrix"]
            for s in ffn["similarity"]
            if s["a"] != s["b"] and s["sublayer"] == sublayer and s["measure"] == "cka"
        )
        gathered = next(s["matrix"] for s in comparison.across if s["sublayer"] == sublayer)
        np.testing.assert_allclose(gathered, measured, rtol=1e-5, atol=1e-6)


def test_compare_names_what_is_not_trained(zoo, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    assert main(["zoo", "compare", "tiny-mix", "nope"]) == 2
    assert "Not trained yet: nope" in capsys.readouterr().err
    assert main(["zoo", "compare"]) == 2


# Fine-tuning (``workbench zoo finetune``): tiny-mix (ar=0.75,zh=0.25) is the base throughout.
FINETUNE = dict(
    mixture="zh=1", tokenizer_languages=("ar", "zh"), base="tiny-mix", tokens=64 * 8 * 6, lr=1e-2, warmup=1, seed=1
)


def _tiny_finetune(**changes) -> ZooOptions:
    return ZooOptions(**{**TINY, **FINETUNE, **changes})


def test_finetune_starts_from_the_base_weights_and_tokenizer(zoo, monkeypatch):
    """With lr 0 a fine-tune ends where it started: exactly the base's weights (so step 0 read
    them), held-out losses and vocabulary; its manifest names the base's exact weights file."""
    import hashlib

    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    folder = train("ft-still", _tiny_finetune(lr=0.0, tokens=64 * 8 * 2), show_progress=False)
    base, tuned = load_file(zoo / "tiny-mix" / "model.safetensors"), load_file(folder / "model.safetensors")
    assert tuned.keys() == base.keys()
    for name in base:
        torch.testing.assert_close(tuned[name], base[name], rtol=0, atol=0)
    info, base_info = (json.loads((zoo / n / "zoo.json").read_text()) for n in ("ft-still", "tiny-mix"))
    assert info["heldout_loss"] == base_info["heldout_loss"]  # the base's languages too, not only the fine-tune's zh
    assert info["base"]["name"] == "tiny-mix" and info["base"]["options"] == base_info["options"]
    assert (
        info["base"]["weights_sha256"]
        == hashlib.sha256((zoo / "tiny-mix" / "model.safetensors").read_bytes()).hexdigest()
    )
    assert info["options"]["base"] == "tiny-mix" and "base" not in base_info["options"] and "base" not in base_info
    assert info["tokenizer"] == base_info["tokenizer"]
    assert (
        AutoTokenizer.from_pretrained(str(folder)).get_vocab()
        == AutoTokenizer.from_pretrained(str(zoo / "tiny-mix")).get_vocab()
    )


def test_finetune_cli_lowers_the_language_loss_resumes_and_copies_twins(zoo, monkeypatch, capsys):
    from safetensors.torch import load_file

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    flags = ["--tokens", str(FINETUNE["tokens"]), "--lr", str(FINETUNE["lr"]), "--warmup", "1", "--quiet"]
    assert main(["zoo", "finetune", "ft-zh", "--base", "tiny-mix", "--language", "zh", *flags]) == 0
    assert "zoo:ft-zh (fine-tuned from zoo:tiny-mix on zh=1) ready at" in capsys.readouterr().out
    info, base_info = (json.loads((zoo / n / "zoo.json").read_text()) for n in ("ft-zh", "tiny-mix"))
    assert info["mixture"] == "zh=1" and info["options"]["seed"] == 1 and info["steps"] == 6
    assert info["heldout_loss"]["zh"] < base_info["heldout_loss"]["zh"] - 0.05

    def stop_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the same run through train(), interrupted, then resumed
        train("ft-zh-again", _tiny_finetune(), show_progress=False, on_step=stop_at_3)
    train("ft-zh-again", _tiny_finetune(), show_progress=False)
    again, reference = (
        load_file(zoo / "ft-zh-again" / "model.safetensors"),
        load_file(zoo / "ft-zh" / "model.safetensors"),
    )
    for name in reference:
        torch.testing.assert_close(again[name], reference[name], rtol=0, atol=0)

    assert main(["zoo", "finetune", "ft-zh-twin", "--base", "tiny-mix", "--mixture", "zh=1", *flags]) == 0
    assert "copied, not retrained" in capsys.readouterr().out


def test_finetune_refuses_other_shapes_foreign_languages_and_missing_bases(zoo, monkeypatch, capsys):
    from workbench.errors import WorkbenchError

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    for changes, message in [
        ({"d_model": 64}, "--d-model 64 \\(base: 32\\)"),
        ({"context": 32}, "--context 32"),
        ({"tokenizer_languages": ()}, "--tokenizer-languages zh \\(base: ar,zh\\)"),
        ({"mixture": "en=1"}, "tiny-mix has no en"),
        ({"max_epochs": 1e-4}, "zh .* passes.*Lower --tokens.*--max-epochs"),
        ({"base": "nope"}, "no trained zoo model 'nope'.*workbench zoo train nope"),
    ]:
        with pytest.raises(WorkbenchError, match=message):
            train("ft-bad", _tiny_finetune(**changes), show_progress=False)
    assert main(["zoo", "finetune", "ft-bad", "--base", "nope", "--language", "zh"]) == 2
    assert "workbench zoo train nope" in capsys.readouterr().err
    assert main(["zoo", "finetune", "ft-bad", "--base", "tiny-mix", "--language", "zh", "--layers", "2"]) == 2
    assert "--layers 2 (base: 1)" in capsys.readouterr().err
    assert not (zoo / "ft-bad").exists()


def test_finetune_cli_options_start_from_the_base(zoo, monkeypatch):
    from workbench.cli import build_parser
    from workbench.cli.zoo import cmd_zoo_finetune, finetune_options_from
    from workbench.errors import WorkbenchError

    monkeypatch.setenv("WORKBENCH_CACHE", str(zoo.parent))
    args = build_parser().parse_args(["zoo", "finetune", "ft", "--base", "tiny-mix", "--language", "FR"])
    assert args.func is cmd_zoo_finetune and args.name == "ft"
    options = finetune_options_from(args, zoo)
    expected = {
        **TINY,
        "mixture": "fr=1",
        "tokenizer_languages": ("ar", "zh"),
        "base": "tiny-mix",
        "seed": 1,
        "tokens": 200_000,
        "lr": 5e-4,
        "warmup": 5,
        "checkpoint_every": 25,
    }
    assert options == ZooOptions(**expected)
    args = build_parser().parse_args(
        ["zoo", "finetune", "ft", "--base", "tiny-mix", "--mixture", "zh=1,ar=0.5", "--lr", "0.01", "--seed", "7"]
    )
    assert finetune_options_from(args, zoo) == ZooOptions(
        **{**expected, "mixture": "zh=1,ar=0.5", "lr": 0.01, "seed": 7}
    )
    for argv, message in [
        (["--base", "tiny-mix"], "--language LANG, or --mixture"),
        (["--language", "zh"], "--base NAME"),
        (["--base", "tiny-mix", "--language", "zh", "--mixture", "zh=1"], "not both"),
    ]:
        with pytest.raises(WorkbenchError, match=message):
            finetune_options_from(build_parser().parse_args(["zoo", "finetune", "ft", *argv]), zoo)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["zoo", "train", "x", "--base", "tiny-mix"])
