"""Result files: the shared base every analysis's result saves and loads through, and the manifest.

A result is a plain dataclass (subclass of [`Result`][workbench.runs.results.Result]) saved as one
JSON file named by its ``JSON`` class attribute. Saving and loading are derived from the fields' type hints: nested
dataclasses, ``dict[str, X]``, ``list[X]``, tuples, numbers, strings, and classes with
``to_dict``/``from_dict`` (e.g. [`NeuronSet`][workbench.neurons.sets.NeuronSet]). NaN is written as
``null`` (strict JSON, readable by any tool) and read back as NaN where the hint says ``float``.
Nothing is ever ``eval``-ed or unpickled.

Every result folder carries a manifest saying what made it: model (and weights build), corpus
(and translations), languages, the nested run configuration, the workbench and library versions,
and the time. Files are written atomically (temporary file, then rename), so an interrupted run
never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import platform
import tempfile
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from workbench.errors import MissingResultError

MANIFEST = "manifest.json"
"""The manifest's file name in a results folder."""
_TRACKED_PACKAGES = ("torch", "transformer-lens", "transformers", "tokenizers", "datasets", "numpy", "plotly")


@contextmanager
def _replaced_atomically(path: Path, suffix: str = "") -> Iterator[str]:
    """A temporary file beside ``path`` for the block to write; renamed onto ``path`` once it has.

    If the block fails, the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    with _replaced_atomically(path) as tmp:
        Path(tmp).write_bytes(data)


def save_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as strict JSON ([`encode`][workbench.runs.results.encode]d), atomically."""
    text = json.dumps(encode(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def load_json(path: Path) -> Any:
    """The JSON value in ``path``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a results folder.

    Raises:
        MissingResultError: ``folder`` has no manifest; the message says what it should be.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MissingResultError(
            f"{folder} is not a results folder (no {MANIFEST}); give the --out folder of a workbench run."
        )
    return load_json(path)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays by name into one ``.npz`` (no pickled objects: plain numeric arrays only)."""
    named = {k: np.asarray(v) for k, v in arrays.items()}
    with _replaced_atomically(Path(path), suffix=".npz") as tmp:
        np.savez_compressed(tmp, **named)  # pyright: ignore[reportArgumentType]  # array names, never allow_pickle


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` by name (pickled objects refused)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def workbench_version() -> str:
    """This package's installed version (``0.0.0+local`` in a source tree that was never installed)."""
    try:
        return version("multilingual-workbench")
    except PackageNotFoundError:
        return "0.0.0+local"


def environment() -> dict[str, str]:
    """Versions of the workbench, Python and the libraries that shape the numbers."""
    env = {"workbench": workbench_version(), "python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = "not installed"
    return env


def make_manifest(
    model: dict[str, Any],
    corpus: dict[str, Any],
    languages: list[str],
    run: dict[str, Any],
    analyses: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a run: what made the results in its folder.

    Args:
        model: Where the model came from ([`model_source`][workbench.models.model.model_source]).
        corpus: The corpus's ``describe()``.
        languages: The run's languages.
        run: The run's own settings.
        analyses: Per analysis, its options and fingerprint.

    Returns:
        The manifest, with the library versions and the time added.
    """
    return {
        "model": model,
        "corpus": corpus,
        "languages": list(languages),
        "run": dict(run),
        "analyses": dict(analyses),
        "versions": environment(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------- the result base


def encode(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (dataclasses by field, NaN as None)."""
    if _own(type(value), "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return encode(value.tolist())
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _own(cls: type, method: str) -> bool:
    """Whether ``cls`` defines its own ``to_dict`` / ``from_dict`` (e.g. NeuronSet).

    Rather than having none or inheriting [`Result`][workbench.runs.results.Result]'s, which this
    module derives from the fields.
    """
    found = inspect.getattr_static(cls, method, None)
    return found is not None and found is not inspect.getattr_static(Result, method)


def decode(hint: Any, data: Any) -> Any:
    """The value of type ``hint`` that [`encode`][workbench.runs.results.encode] wrote as ``data``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        return decode(next(a for a in args if a is not type(None)), data)
    if hint is float:
        return math.nan if data is None else float(data)
    if data is None or hint is Any:
        return data
    if isinstance(hint, type) and _own(hint, "from_dict"):
        return hint.from_dict(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{k: decode(hints[k], v) for k, v in data.items() if k in names})
    if origin is dict:
        return {k: decode(args[1], v) for k, v in data.items()} if args else dict(data)
    if origin is list:
        return [decode(args[0], v) for v in data] if args else list(data)
    if origin is tuple:
        items = args[:1] * len(data) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(decode(a, v) for a, v in zip(items, data)) if args else tuple(data)
    return data


class Result:
    """Base of every analysis's result (a dataclass): saved as ``folder/JSON``, loaded back from its type hints.

    Subclasses give ``JSON`` and their fields, and a ``table()``.

    Attributes:
        JSON: The result's file name in a results folder.
    """

    JSON: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data ([`encode`][workbench.runs.results.encode])."""
        return encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The result that [`to_dict`][workbench.runs.results.Result.to_dict] wrote as ``data``."""
        return decode(cls, data)

    def save(self, folder: Path) -> Path:
        """Save the result as ``folder/JSON``; return the file's path."""
        path = Path(folder) / self.JSON
        save_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: Path) -> Self:
        """The result saved in ``folder``.

        Raises:
            MissingResultError: ``folder`` has no such result.
        """
        path = Path(folder) / cls.JSON
        if not path.is_file():
            raise MissingResultError(f"{folder} has no {cls.JSON}; run the analysis that writes it first.")
        return cls.from_dict(load_json(path))
