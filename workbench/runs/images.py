"""Static images (PNG, SVG, PDF) of plotly figures, for the README and anything else without JavaScript.

How: kaleido 1.x (PyPI) renders each figure with plotly.js inside a headless Chromium that it drives
over the DevTools protocol; one browser serves the whole batch (about 2 s to start, then ~0.3 s a
figure on 2 cores). Everything it loads is local: plotly.js from the installed plotly package, and
MathJax switched off (kaleido would otherwise put a CDN script tag on its page), so export works offline.

Why this way: plotly 7 exports only through kaleido >= 1, and kaleido >= 1 no longer bundles a
browser (kaleido 0.2.1 did, 80 MB, Chromium of 2021, and plotly 7 refuses it). The browser comes from
the system instead, never downloaded at run time: Debian's `chromium-headless-shell` (the smallest
and fastest to start; `apt-get install --no-install-recommends chromium-headless-shell`), or any
Chrome/Chromium on PATH, or the executable named by the BROWSER_PATH environment variable.
A bare `chromium --screenshot` of an HTML page would need no kaleido, but it cannot make SVG,
starts one browser per figure and has to guess when plotly.js has finished drawing.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import cast

import plotly
import plotly.graph_objects as go

from workbench.errors import WorkbenchError

FORMATS = ("png", "svg", "pdf", "jpeg", "jpg", "webp")
"""The image formats kaleido writes."""
DEFAULT_HEIGHT = 500
"""The height of a figure that sets none, in layout pixels."""
BROWSER_NAMES = (
    "chromium-headless-shell",
    "chrome-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)
"""The browsers looked for on PATH, in this order, when BROWSER_PATH is not set."""
INSTALL_HINT = (
    "run `make assets-deps` (it runs `apt-get install --no-install-recommends chromium-headless-shell` "
    "and `pip install 'kaleido>=1'` in the project's environment)"
)
"""How to install what image export needs, as every export error says it."""


class ImageExportError(WorkbenchError, RuntimeError):
    """Static image export is impossible here: no kaleido >= 1, no browser, or the browser failed."""


def find_browser() -> str:
    """The Chrome/Chromium to render with: BROWSER_PATH if set, else the first of BROWSER_NAMES on PATH."""
    if override := os.environ.get("BROWSER_PATH"):
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ImageExportError(
                f"BROWSER_PATH={override!r} is not an executable file. Point it at a Chrome or Chromium, "
                f"or unset it and {INSTALL_HINT}."
            )
        return override
    for name in BROWSER_NAMES:
        if path := shutil.which(name):
            return path
    raise ImageExportError(
        f"Static image export needs a headless Chrome or Chromium and none was found: {INSTALL_HINT}."
    )


def kaleido_module() -> ModuleType:
    """The kaleido package (>= 1), imported on first use so that the rest of the workbench never needs it.

    Raises:
        ImageExportError: kaleido is missing or older than 1.
    """
    try:
        version = importlib.metadata.version("kaleido")
    except importlib.metadata.PackageNotFoundError:
        raise ImageExportError(f"Static image export needs the kaleido package (>= 1): {INSTALL_HINT}.") from None
    if int(version.split(".")[0]) < 1:
        raise ImageExportError(
            f"kaleido {version} is too old for plotly {plotly.__version__} (it needs >= 1): {INSTALL_HINT}."
        )
    import kaleido

    return kaleido


def plotly_js() -> Path:
    """The plotly.js shipped inside the plotly package, so that the page loads nothing from the network."""
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ImageExportError(f"The plotly package has no {path}: reinstall it with `make install`.")
    return path


def figure_height(fig: go.Figure, height: int | None) -> int:
    """The height asked for, else the figure's own layout height, else DEFAULT_HEIGHT."""
    if height:
        return int(height)
    own = cast(go.Layout, fig.layout).height  # plotly's properties carry no annotations
    return int(own) if isinstance(own, int | float) and own else DEFAULT_HEIGHT


def check_name(name: str) -> str:
    """A figure name usable as a file name in the target folder (no folders, not empty)."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"Figure name {name!r} is not a plain file name: use letters, digits, '-' or '_'.")
    return name


def write_images(
    figures: dict[str, go.Figure],
    folder: Path,
    fmt: str = "png",
    width: int = 1000,
    height: int | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write ``folder/<name>.<fmt>`` for each figure, with one browser for the batch.

    Args:
        figures: The figures by name (each name a plain file name).
        folder: Where the images go.
        fmt: One of [`FORMATS`][workbench.runs.images.FORMATS].
        width: The width in layout pixels.
        height: The height in layout pixels (default: each figure's layout height, or 500).
        scale: A PNG is ``round(width * scale)`` pixels wide.

    Returns:
        The images' paths, in the figures' order.

    Raises:
        ValueError: An unknown format, or a figure name that is not a plain file name.
        ImageExportError: kaleido or a browser is missing (the message names the install step),
            or the browser failed.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown image format {fmt!r}: use one of {', '.join(FORMATS)}.")
    paths = [Path(folder) / f"{check_name(name)}.{fmt}" for name in figures]
    if not figures:
        return []
    kaleido = kaleido_module()
    browser = find_browser()
    Path(folder).mkdir(parents=True, exist_ok=True)
    specs = [
        {
            # Through JSON: numpy arrays, NaN and dates become what plotly.js reads.
            "fig": json.loads(cast(str, fig.to_json())),  # plotly documents a str
            "path": path,
            "opts": {"format": fmt, "width": int(width), "height": figure_height(fig, height), "scale": float(scale)},
        }
        for fig, path in zip(figures.values(), paths)
    ]
    for path in paths:  # so that a figure the browser silently skipped cannot pass for done
        path.unlink(missing_ok=True)
    options = {"path": browser, "plotlyjs": str(plotly_js()), "mathjax": False}
    try:
        kaleido.write_fig_from_object_sync(specs, kopts=options, cancel_on_error=True)
    except Exception as exc:  # kaleido and choreographer raise many types; all mean the same here
        raise ImageExportError(
            f"Image export with the browser {browser} failed ({type(exc).__name__}: {exc}). "
            f"Set BROWSER_PATH to another Chrome/Chromium, or {INSTALL_HINT}."
        ) from exc
    missing = [str(p) for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise ImageExportError(f"Image export with the browser {browser} wrote nothing to: {', '.join(missing)}.")
    return paths
