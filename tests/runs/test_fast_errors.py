"""Bad input is refused before anything heavy loads: an unknown language, an unknown model name, an
untrained zoo model, a folder without a model. Each answers with one ``workbench: error:`` line
from a process that never imported torch, TransformerLens or datasets, about as fast as ``--help``."""

import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "transformer_lens", "datasets", "transformers")
PROBE = """
import sys
from workbench.cli import main
code = main(sys.argv[1:])
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
"""


def _workbench(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=cwd, capture_output=True, text=True
    )
    return result, time.perf_counter() - started


@pytest.fixture(scope="module")
def help_seconds(tmp_path_factory) -> float:
    result, seconds = _workbench(["--help"], tmp_path_factory.mktemp("help"))
    assert result.returncode == 0
    return seconds


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--languages", "en,xx"], "Language(s) xx not in corpus"),
        (["lens", "--languages", "en,de,xx"], "Language(s) xx not in corpus"),
        (["run", "--model", "nosuch"], "Unknown model 'nosuch'"),
        (["plnd", "--model", "zoo:nosuch"], "No zoo model 'nosuch'"),
        (["run", "--model", "FOLDER"], "has no config.json"),
        (["run", "--model", "FILE"], "is a file, not a model folder"),
    ],
)
def test_bad_input_is_refused_before_torch_loads(tmp_path, help_seconds, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"")
    args = [{"FOLDER": str(tmp_path / "empty"), "FILE": str(tmp_path / "weights.bin")}.get(a, a) for a in args]
    result, seconds = _workbench([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("workbench: error:") and message in result.stderr
    assert result.stdout.strip() == "heavy:", result.stdout  # nothing heavy was imported
    assert not (tmp_path / "out").exists()
    # the same order of time as --help (torch alone takes seconds to import)
    assert seconds < 2 * help_seconds + 1.0, (seconds, help_seconds)


def test_the_names_agree_with_transformer_lens():
    """The model-name check reads TransformerLens's own list without importing it; it must say what
    TransformerLens says, for every official name and alias, in any case."""
    from transformer_lens.loading_from_pretrained import get_official_model_name
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    from workbench.models.specs import official_name

    names = list(OFFICIAL_MODEL_NAMES) + [alias for aliases in MODEL_ALIASES.values() for alias in aliases]
    for name in names + [name.upper() for name in names[:50]]:
        assert official_name(name) == get_official_model_name(name), name
    assert official_name("nosuch") is None
