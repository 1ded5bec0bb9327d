"""Write the README's model table from what the coverage matrix measured.

``tests/models/test_families.py`` runs every analysis on a tiny model of each family and records,
per family, the load route, PLND's agreement with literal zeroing and the attribution graphs'
completeness in ``build/model-coverage.json``. This script turns that file into the table between
the ``model-table`` markers of README.md (``make model-table``: the matrix, then this script), so
each cell is what a test saw. ``--check`` only says whether the README is up to date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COVERAGE = ROOT / "build" / "model-coverage.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- model-table -->", "<!-- /model-table -->"
ANALYSES = (
    "loss",
    "lens",
    "plnd",
    "ablate",
    "finetune",
    "ffn",
    "clt-train",
    "clt-features",
    "clt-steer",
    "clt-graph",
    "clt-diff",
)


def table(coverage: dict[str, dict]) -> str:
    """The Markdown table: a row per family, a column per analysis (each ✓ a passing matrix run)."""
    head = [
        "family",
        "architecture",
        "quirks in the test",
        "loads as",
        *ANALYSES,
        "PLND vs zeroing",
        "graph completeness",
        "logits vs HF",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, row in coverage.items():
        cells = [
            name,
            f"`{row['architecture']}`",
            row["quirks"],
            row["route"],
            *["✓"] * len(ANALYSES),
            f"{row['plnd_literal_error']:.0e}",
            f"{row['graph_completeness_error']:.0e}",
            f"{row['logit_error']:.0e}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def updated(readme: str, coverage: dict[str, dict]) -> str:
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return pattern.sub(lambda _: f"{BEGIN}\n{table(coverage)}\n{END}", readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's table differs")
    args = parser.parse_args()
    if not COVERAGE.exists():
        raise SystemExit(f"{COVERAGE} is missing: run pytest tests/models/test_families.py first")
    from workbench.models.families import FAMILIES

    measured = json.loads(COVERAGE.read_text())
    missing = [name for name in FAMILIES if name not in measured]
    if missing:
        raise SystemExit(f"{COVERAGE} lacks {', '.join(missing)}: run the whole matrix")
    readme = README.read_text(encoding="utf-8")
    new = updated(readme, {name: measured[name] for name in FAMILIES})
    if args.check:
        return int(new != readme)
    README.write_text(new, encoding="utf-8")
    print(f"README.md: model table of {len(FAMILIES)} families")
    return 0


if __name__ == "__main__":
    sys.exit(main())
