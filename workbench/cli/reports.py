"""``workbench report`` and ``workbench figures``: a results folder's HTML report, and static images of its figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.flags import split_list
from workbench.errors import WorkbenchError


def cmd_report(args: argparse.Namespace) -> int:
    """``workbench report FOLDER``: rebuild the folder's report (a run's, or a zoo comparison's)."""
    from workbench.runs.report import write_report
    from workbench.zoo.compare import ZooComparison

    folder = Path(args.folder)
    if (folder / ZooComparison.JSON).exists():  # a zoo comparison's folder (workbench zoo compare)
        from workbench.zoo.plots import write_zoo_report

        print(f"Report: {write_zoo_report(folder, ZooComparison.load(folder)).resolve()}")
        return 0
    print(f"Report: {write_report(folder).resolve()}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """``workbench figures``: static images of a results folder's figures (README assets)."""
    from workbench.runs.images import write_images
    from workbench.runs.report import collect_figures

    figures = collect_figures(Path(args.folder))
    wanted = split_list(args.only) if args.only else list(figures)
    missing = [name for name in wanted if name not in figures]
    if missing:
        raise WorkbenchError(f"{args.folder} has no figure {', '.join(missing)}; it has: {', '.join(figures)}.")
    paths = write_images({name: figures[name] for name in wanted}, Path(args.out), args.format, args.width)
    for path in paths:
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``report`` and ``figures``."""
    report = sub.add_parser("report", help="rebuild report.html of a results folder")
    report.add_argument("folder")
    report.set_defaults(func=cmd_report)

    images = sub.add_parser("figures", help="static images (PNG/SVG) of a results folder's figures (make assets)")
    images.add_argument("folder")
    images.add_argument("--out", default="assets", help="folder for the images")
    images.add_argument("--only", default="", help="comma-separated figure names (default: every figure)")
    images.add_argument("--format", choices=["png", "svg"], default="png")
    images.add_argument("--width", type=int, default=1000, help="pixels")
    images.set_defaults(func=cmd_figures)
