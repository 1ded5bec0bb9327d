"""The slice contract: options defined once and checked in one place, results saved through one base."""

import json
import math
from dataclasses import dataclass, field, fields

import pytest

from workbench.analyses import REGISTRY, load_slice, with_requirements
from workbench.interventions.measures import Measures
from workbench.neurons.selection import Selection
from workbench.neurons.sets import NeuronSet
from workbench.runs.options import OptionError, RunOptions, value_kind
from workbench.runs.results import Result


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_slice_exports_the_contract(name):
    piece = load_slice(name)
    assert name == piece.Options.ANALYSIS
    assert all(need in REGISTRY and list(REGISTRY).index(need) < list(REGISTRY).index(name) for need in piece.requires)
    for attribute in ("run", "Result", "figures", "section"):
        assert callable(getattr(piece, attribute))
    defaults = piece.Options()  # the defaults pass their own checks
    for f in fields(defaults):
        assert f.metadata["help"], f"{name}.{f.name} has no help text"
        value_kind(piece.Options.hints()[f.name])  # a kind the command line knows


def test_requirements_are_added_in_run_order():
    assert with_requirements(["ablate", "loss"]) == ["loss", "plnd", "ablate"]
    assert with_requirements(["finetune"]) == ["plnd", "finetune"]


def test_options_are_checked_with_the_flag_to_change():
    plnd, ablate, finetune = (load_slice(n).Options for n in ("plnd", "ablate", "finetune"))
    with pytest.raises(OptionError, match="--plnd-documents must be at least 1"):
        plnd(documents=0)
    with pytest.raises(OptionError, match="--plnd-structures: unknown value 'mlp'"):
        plnd(structures=("ffn", "mlp"))
    with pytest.raises(OptionError, match="top_fraction"):
        plnd(value=1.5)
    with pytest.raises(OptionError, match="must include 'all'"):
        ablate(groups=("generation",))
    with pytest.raises(OptionError, match="--finetune-sizes must be at least 1"):
        finetune(sizes=(100, 0))
    with pytest.raises(OptionError, match="takes int values"):
        finetune(sizes=(1.5,))
    with pytest.raises(OptionError, match="--on-too-long: unknown value"):
        RunOptions(on_too_long="drop")
    assert plnd(structures=["ffn"]).structures == ("ffn",)  # a list from Python is frozen as a tuple
    assert RunOptions(languages=("EN", "de", "en")).languages == ("en", "de")


def test_plnd_defaults_are_the_selection_defaults():
    options = load_slice("plnd").Options()
    assert options.selection() == Selection()


def test_fingerprints_change_with_settings_and_requirements():
    plnd = load_slice("plnd").Options
    context = RunOptions(model="tiny").context()
    assert plnd().fingerprint(context) == plnd().fingerprint(context)
    assert plnd(documents=8).fingerprint(context) != plnd().fingerprint(context)
    assert plnd().fingerprint(RunOptions(model="tiny", seed=1).context()) != plnd().fingerprint(context)
    assert plnd().fingerprint(context, ["a"]) != plnd().fingerprint(context, ["b"])
    assert RunOptions(device="cuda").context() == RunOptions().context()  # where it runs does not decide numbers


@dataclass
class _Inner:
    value: float
    optional: float | None = None


@dataclass
class _Example(Result):
    counts: dict[str, list[int]]
    inner: dict[str, _Inner]
    nested: list[list[float]]
    sets: dict[str, NeuronSet]
    measures: list[Measures]
    pair: tuple[int, str]
    notes: dict = field(default_factory=dict)

    JSON = "example.json"


def test_results_save_and_load_through_the_shared_base(tmp_path):
    result = _Example(
        counts={"de": [1, 2]},
        inner={"x": _Inner(math.nan), "y": _Inner(1.5, 2.0)},
        nested=[[0.5, math.nan]],
        sets={"de": NeuronSet({"ffn": [[0, 3], [1, 2]]})},
        measures=[Measures(1.0, 0.5, 0.25, 10)],
        pair=(3, "a"),
        notes={"free": [1, "two"]},
    )
    path = result.save(tmp_path)
    assert "NaN" not in path.read_text()  # strict JSON: NaN is written as null
    assert json.loads(path.read_text())["sets"]["de"] == {"ffn": [[0, 3], [1, 2]]}  # a class's own to_dict wins
    back = _Example.load(tmp_path)
    assert math.isnan(back.inner["x"].value) and back.inner["x"].optional is None and back.inner["y"].optional == 2.0
    assert math.isnan(back.nested[0][1]) and back.nested[0][0] == 0.5
    assert back.sets["de"].to_dict() == {"ffn": [[0, 3], [1, 2]]}
    assert back.measures == result.measures and back.pair == (3, "a") and back.counts == {"de": [1, 2]}
    assert back.to_dict() == result.to_dict()


def test_loading_a_missing_result_names_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the analysis that writes it"):
        _Example.load(tmp_path)


@pytest.mark.parametrize("preset", ["gemma-clt", "gemma-clt-workshop"])
def test_the_gemma_study_presets_parse_and_give_per_layer_transcoders(preset):
    """The make targets' presets: valid options for every analysis of the study (the Makefile's
    list), per-layer transcoders, the study's languages, the full study's diff of its own
    fine-tune, and a flag given on top still wins."""
    from pathlib import Path

    from workbench.cli import build_parser
    from workbench.cli.flags import analyses_from, options_from
    from workbench.runs.job import resolve

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    study = next(line.split(":=")[1].strip() for line in makefile.splitlines() if line.startswith("CLT_STUDY :="))
    study += ",clt-diff" if preset == "gemma-clt" else ""
    args = build_parser().parse_args(["run", "--preset", preset, "--analyses", study, "--clt-train-tokens", "999"])
    run = options_from(args, RunOptions, preset)
    analyses = analyses_from(args, study.split(","), preset)
    assert list(resolve(analyses)) == list(analyses)
    train = analyses["clt-train"]
    assert train.per_layer and train.tokens == 999 and len(run.languages) >= 4 and "probe" in analyses
    assert train.skip and train.reuse  # the levers that paid (docs/clt.md, the sweep)
    assert (0 < len(train.layers) < 18) == (preset == "gemma-clt-workshop")
    for options in analyses.values():
        options.check_run(run)
    if preset == "gemma-clt":
        assert len(run.languages) == 8
        assert analyses["clt-diff"].tuned == "finetune" and analyses["finetune"].sizes == (400,)
        assert train.splice_steps > 0  # all 18 layers spliced compound their errors: the fine-tune aims at it
        assert list(analyses)[:2] == ["probe", "plnd"]


def test_what_settings_need_is_added_with_its_flags():
    """clt-diff of the run's own fine-tune brings finetune (and PLND) in, and finetune's flags apply."""
    from workbench.cli import build_parser
    from workbench.cli.flags import analyses_from

    argv = ["run", "--analyses", "clt-diff", "--clt-diff-tuned", "finetune", "--finetune-sizes", "10"]
    analyses = analyses_from(build_parser().parse_args(argv), ["clt-diff"], None)
    assert list(analyses) == ["plnd", "finetune", "clt-train", "clt-diff"] and analyses["finetune"].sizes == (10,)
    with pytest.raises(OptionError, match="finetune"):
        analyses_from(
            build_parser().parse_args(["run", "--analyses", "clt-diff", "--finetune-sizes", "10"]), ["clt-diff"], None
        )
