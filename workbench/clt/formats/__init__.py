"""Transcoder files, ours and other tools', read into and written from a ``CrossLayerTranscoder``.

One module per format, each with its files described in its docstring:
[`ours`][workbench.clt.formats.ours] (``config.json`` + ``clt.safetensors``),
[`featflow`][workbench.clt.formats.featflow] (the CLT paper's code),
[`circuit_tracer`][workbench.clt.formats.circuit_tracer],
[`gemma_scope`][workbench.clt.formats.gemma_scope] (Gemma Scope 2's downloaded ``transcoder_all``
and ``clt`` folders) and [`saelens`][workbench.clt.formats.saelens] (one folder per layer); the
pieces they share are in [`_common`][workbench.clt.formats._common]. The registry here,
``FORMATS``, says for each format how to recognise a folder, read it and write one of ours:
``load_transcoder`` (behind ``--clt-train-load``) tells the format from the files present and reads
it, ``save_transcoder`` writes any of ours in a format by name. Skip transcoders go to and come from
every format but featflow's, and circuit-tracer's CLT files (their skip has nowhere to go).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.clt.formats import circuit_tracer, featflow, gemma_scope, ours, saelens
from workbench.clt.formats._common import CheckpointError, model_facts

if TYPE_CHECKING:
    from workbench.clt.transcoder import CrossLayerTranscoder
    from workbench.models.model import Model


@dataclass(frozen=True)
class Format:
    """One transcoder file format: how to recognise its folders, read them, and write one of ours.

    Attributes:
        name: What ``detect`` answers (``workbench``, ``featflow``, ``circuit-tracer``,
            ``gemma-scope-2``, ``saelens``).
        files: The files that make a folder of this format, in words (for refusals).
        recognises: Whether a folder holds this format's files.
        read: ``read(folders, model_name, model, variant)``: the transcoder in ``folders``;
            ``model_name`` is recorded where the files name no model, ``model`` (or None) supplies
            its norms, ``variant`` picks one of several in a folder (Gemma Scope 2's only).
        write: ``write(clt, folder, model_name, model)``: ``clt`` written under ``folder``; returns
            the folders to hand back to ``read``.
        several: Whether the format is read from several folders (one per layer).
    """

    name: str
    files: str
    recognises: Callable[[Path], bool]
    read: Callable[[list[Path], str, Model | None, str | None], CrossLayerTranscoder]
    write: Callable[[CrossLayerTranscoder, Path, str, Model | None], list[Path]]
    several: bool = False


def _read_ours(folders: list[Path], model_name: str, model: Model | None, variant: str | None) -> CrossLayerTranscoder:
    """Ours records its model in its config, so ``model_name`` is not used."""
    return ours.load(folders[0])


def _write_ours(clt: CrossLayerTranscoder, folder: Path, model_name: str, model: Model | None) -> list[Path]:
    """Ours records the transcoder's own model."""
    return [ours.save(clt, folder)]


def _read_featflow(
    folders: list[Path], model_name: str, model: Model | None, variant: str | None
) -> CrossLayerTranscoder:
    """The checkpoint [`load_featflow`][workbench.clt.formats.featflow.load_featflow] reads (no norms needed)."""
    return featflow.load_featflow(folders[0], model_name)


def _write_featflow(clt: CrossLayerTranscoder, folder: Path, model_name: str, model: Model | None) -> list[Path]:
    """[`save_featflow`][workbench.clt.formats.featflow.save_featflow] as the registry calls it."""
    return [featflow.save_featflow(clt, folder, model_name)]


def _read_circuit_tracer(
    folders: list[Path], model_name: str, model: Model | None, variant: str | None
) -> CrossLayerTranscoder:
    """The model supplies the norms to fold in and says whether its MLPs have a norm after them."""
    return circuit_tracer.load_circuit_tracer(folders[0], model_name, *model_facts(model))


def _write_circuit_tracer(clt: CrossLayerTranscoder, folder: Path, model_name: str, model: Model | None) -> list[Path]:
    """[`save_circuit_tracer`][workbench.clt.formats.circuit_tracer.save_circuit_tracer] as the registry calls it."""
    return [circuit_tracer.save_circuit_tracer(clt, folder, model_name)]


def _read_gemma_scope(
    folders: list[Path], model_name: str, model: Model | None, variant: str | None
) -> CrossLayerTranscoder:
    """The model supplies the norms to fold in; ``variant`` picks one of several."""
    return gemma_scope.load_gemma_scope(folders[0], model_facts(model)[0], model_name, variant)


def _write_gemma_scope(clt: CrossLayerTranscoder, folder: Path, model_name: str, model: Model | None) -> list[Path]:
    """The model supplies the norms to divide out (Gemma Scope 2's files read the norm's output)."""
    norms = model_facts(model)[0]
    if norms is None:
        raise CheckpointError(
            "Gemma Scope 2's files read the MLP norm's output, so writing them divides the model's norm "
            "weights out: pass the model (save_transcoder(..., model=model)), loaded without folding layer norms."
        )
    return [gemma_scope.save_gemma_scope(clt, folder, norms)]


def _read_saelens(
    folders: list[Path], model_name: str, model: Model | None, variant: str | None
) -> CrossLayerTranscoder:
    """[`load_for_model`][workbench.clt.formats.saelens.load_for_model] as the registry calls it."""
    return saelens.load_for_model(folders, model_name, model)


def _write_saelens(clt: CrossLayerTranscoder, folder: Path, model_name: str, model: Model | None) -> list[Path]:
    """[`save_saelens`][workbench.clt.formats.saelens.save_saelens] as the registry calls it."""
    return saelens.save_saelens(clt, folder, model_name)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "workbench",
            f"ours ({ours.CONFIG_FILE} + {ours.WEIGHTS_FILE})",
            ours.recognises,
            _read_ours,
            _write_ours,
        ),
        Format(
            "featflow",
            f"featflow's ({featflow.CONFIG_FILE} + {featflow.WEIGHTS_FILE})",
            featflow.recognises,
            _read_featflow,
            _write_featflow,
        ),
        Format(
            "circuit-tracer",
            f"circuit-tracer's ({circuit_tracer.CONFIG_FILE} with layer_{{i}}.safetensors or "
            "W_enc_{i}/W_dec_{i}.safetensors)",
            circuit_tracer.recognises,
            _read_circuit_tracer,
            _write_circuit_tracer,
        ),
        Format(
            "gemma-scope-2",
            "Gemma Scope 2's downloaded transcoder_all folder (layer_{i}_<variant>/params.safetensors) or clt "
            "folder (<variant>/params_layer_{i}.safetensors)",
            gemma_scope.recognises,
            _read_gemma_scope,
            _write_gemma_scope,
        ),
        Format(
            "saelens",
            f"SAELens transcoder folders ({saelens.CFG_FILE} + {saelens.WEIGHTS_FILE}), one per layer",
            saelens.recognises,
            _read_saelens,
            _write_saelens,
            several=True,
        ),
    )
}
"""The formats by name. A folder is tried against those read from several folders first, then the others in order."""

_GIVE = ", ".join(f.files for f in list(FORMATS.values())[:-1]) + f", or {list(FORMATS.values())[-1].files}"


def load_transcoder(
    source: Path | str | Sequence[Path | str],
    model_name: str = "",
    model: Model | None = None,
    device: str = "cpu",
    variant: str | None = None,
) -> CrossLayerTranscoder:
    """The transcoder in ``source``, whatever its format (told from the files present).

    Check the result against the model with
    [`check_fits`][workbench.clt.transcoder.check_fits].

    Args:
        source: A folder, or several folders (SAELens transcoders, one per layer, in layer order).
        model_name: Recorded as the transcoder's model where the files name none (a SAELens or
            Gemma Scope 2 transcoder takes it as given).
        model: The hooked model it will run on: it supplies the MLP input norms that a transcoder
            reading the norm's output needs folded in, and says whether the MLP has a norm after it.
        device: Where the transcoder goes.
        variant: With a Gemma Scope 2 folder holding several variants, the one to read, as its
            folder names end (``width_16k_l0_small_affine``).

    Raises:
        CheckpointError: No folder, a folder of no known format, files that a workbench
            transcoder cannot reproduce, or a variant given for a format that has none.
    """
    folders = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    kind = detect(folders)
    if variant is not None and kind != "gemma-scope-2":
        raise CheckpointError(
            f"A variant ({variant!r}) picks one of the Gemma Scope 2 transcoders in a folder, but "
            f"{', '.join(map(str, folders))} holds {kind} files; drop the variant."
        )
    return FORMATS[kind].read(folders, model_name, model, variant).to(device)


def save_transcoder(
    clt: CrossLayerTranscoder, folder: Path | str, kind: str, model_name: str = "", model: Model | None = None
) -> list[Path]:
    """Write ``clt`` under ``folder`` in the format named ``kind`` (a key of ``FORMATS``).

    Args:
        clt: The transcoder.
        folder: Where to write (made if missing).
        kind: ``workbench``, ``featflow``, ``circuit-tracer``, ``gemma-scope-2`` or ``saelens``.
        model_name: The model recorded in the files (default: the transcoder's own; ours always
            records its own).
        model: The model it runs on: Gemma Scope 2's files need its norm weights.

    Returns:
        The folders written, as ``load_transcoder`` takes them back (one per layer for SAELens).

    Raises:
        CheckpointError: An unknown format, or a transcoder the format cannot hold.
    """
    if kind not in FORMATS:
        raise CheckpointError(f"No transcoder format {kind!r}; the workbench writes {', '.join(FORMATS)}.")
    return FORMATS[kind].write(clt, Path(folder), model_name, model)


def detect(folders: list[Path]) -> str:
    """The name of the format of ``folders``, from the files present.

    Raises:
        CheckpointError: No folder, a missing one, several folders of a format read from one, or
            none of the formats (the message says what the folders hold).
    """
    if not folders:
        raise CheckpointError(f"No transcoder folder given; give {_GIVE}.")
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise CheckpointError(f"No folder {', '.join(missing)}; give {_GIVE}.")
    for fmt in FORMATS.values():
        if fmt.several and all(fmt.recognises(f) for f in folders):
            return fmt.name
    if len(folders) > 1:
        raise CheckpointError(
            f"Several folders are read only as SAELens transcoders (one per layer), but "
            f"{_contents(folders)}; give one folder of {_GIVE}."
        )
    for fmt in FORMATS.values():
        if not fmt.several and fmt.recognises(folders[0]):
            return fmt.name
    raise CheckpointError(f"{_contents(folders)}: no transcoder format the workbench reads. Give {_GIVE}.")


def _contents(folders: list[Path]) -> str:
    """What the folders hold, in words (for a refusal)."""

    def one(folder: Path) -> str:
        """One folder's first names."""
        names = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return f"{folder} holds {shown or 'nothing'}"

    return "; ".join(one(f) for f in folders)


__all__ = ["FORMATS", "CheckpointError", "Format", "detect", "load_transcoder", "save_transcoder"]
