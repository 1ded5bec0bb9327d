"""The code-quality numbers of issue 34, measured on a tree: `python tools/code_stats.py [workbench]`.

Counts public functions (module level and methods, names without a leading underscore, in modules
whose names are public) and how many carry a full signature (every parameter but ``self``/``cls``
and the return annotated) and a docstring; ``# fmt: skip`` markers; modules over 400 lines;
functions over 60 lines; tensor annotations of public functions and how many carry a jaxtyping shape.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _functions(tree: ast.Module):
    """Every function of a module with whether it is public (itself and its enclosing classes)."""

    def walk(node: ast.AST, public: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield child, public and not child.name.startswith("_")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, public and not child.name.startswith("_"))

    yield from walk(tree, True)


def _annotated(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    args = [a for a in args if a.arg not in ("self", "cls")]
    extra = [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
    return fn.returns is not None and all(a.annotation is not None for a in [*args, *extra])


SHAPED = ("Float[", "Int[", "Bool[", "Shaped[", "Num[")


def _tensor_annotations(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    notes = [a.annotation for a in args if a.annotation is not None] + ([fn.returns] if fn.returns else [])
    return [text for text in map(ast.unparse, notes) if "Tensor" in text]


def main(root: str = "workbench") -> None:
    public = annotated = documented = long_functions = skips = tensors = shaped = 0
    big_modules: list[str] = []
    for path in sorted(Path(root).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        skips += text.count("fmt: skip")
        if len(text.splitlines()) > 400:
            big_modules.append(f"{path} ({len(text.splitlines())})")
        private_module = any(part.startswith("_") and part not in ("__init__.py",) for part in path.parts)
        for fn, is_public in _functions(ast.parse(text)):
            if (fn.end_lineno or fn.lineno) - fn.lineno + 1 > 60:
                long_functions += 1
            if is_public and not private_module:
                public += 1
                annotated += _annotated(fn)
                documented += ast.get_docstring(fn) is not None
                notes = _tensor_annotations(fn)
                tensors += len(notes)
                shaped += sum(any(k in text for k in SHAPED) for text in notes)
    print(f"public functions: {public}")
    print(f"  fully annotated: {annotated} ({annotated / public:.0%})")
    print(f"  with a docstring: {documented} ({documented / public:.0%})")
    print(f"  tensor annotations: {tensors}, with a jaxtyping shape: {shaped}")
    print(f"fmt: skip markers: {skips}")
    print(f"modules over 400 lines: {len(big_modules)} {big_modules}")
    print(f"functions over 60 lines: {long_functions}")


if __name__ == "__main__":
    main(*sys.argv[1:])
