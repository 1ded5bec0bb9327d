"""Whether two run folders hold the same numbers: `python tools/compare_runs.py A B`.

Compares every JSON file (results, manifest, parts) value by value and every safetensors part
tensor by tensor, with the same relative folder names (so the parts' fingerprints, which hash the
options and run settings, must match too). Keys that record time, place or versions are skipped.
Exits 1 and lists the differences when any value differs by more than ``--rtol``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

SKIPPED = {"load_seconds", "seconds", "created", "finished", "started", "versions", "elapsed", "cache", "out"}


def _walk(a: Any, b: Any, where: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in SKIPPED or "second" in key:
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'B' if key not in a else 'A'}")
            else:
                _walk(a[key], b[key], f"{where}.{key}", rtol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items against {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{where}[{i}]", rtol, out)
    elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        if not (math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))):
            out.append(f"{where}: {a!r} against {b!r}")
    elif a != b:
        out.append(f"{where}: {str(a)[:80]!r} against {str(b)[:80]!r}")


def _tensors(a: Path, b: Path, rtol: float, out: list[str]) -> None:
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    if set(ta) != set(tb):
        out.append(f"{a.name}: tensors {sorted(ta)} against {sorted(tb)}")
    for key in sorted(set(ta) & set(tb)):
        x, y = ta[key], tb[key]
        if x.shape != y.shape or not torch.allclose(x.double(), y.double(), rtol=rtol, atol=0.0, equal_nan=True):
            out.append(f"{a}:{key}: differs")


def compare(a: Path, b: Path, rtol: float) -> list[str]:
    """The differences between run folders ``a`` and ``b``, one line each (empty: the same numbers)."""
    out: list[str] = []
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.suffix in (".json", ".safetensors")}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.suffix in (".json", ".safetensors")}
    out += [f"only in A: {p}" for p in sorted(files_a - files_b)]
    out += [f"only in B: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if rel.suffix == ".json":
            _walk(json.loads((a / rel).read_text()), json.loads((b / rel).read_text()), str(rel), rtol, out)
        else:
            _tensors(a / rel, b / rel, rtol, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default: exactly equal)")
    args = parser.parse_args()
    files = sum(1 for p in args.a.rglob("*") if p.suffix in (".json", ".safetensors"))
    differences = compare(args.a, args.b, args.rtol)
    print("\n".join(differences[:50]))
    print(f"{files} files compared, {len(differences)} differences")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
