"""Static image export (workbench.runs.images): a real PNG from a real browser, plus the cheap checks.

No skip when kaleido or the browser is missing: the export test then fails with the error that
names the install step (`make assets-deps`), so a machine without the exporter cannot pass silently.
"""

from __future__ import annotations

import struct
from pathlib import Path

import plotly.graph_objects as go
import pytest

from workbench.runs import images
from workbench.runs.images import ImageExportError, write_images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk, right after the signature)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", head[8:16])
    assert kind == b"IHDR" and length == 13, f"{path} has no IHDR chunk first"
    return struct.unpack(">II", head[16:24])


def tiny_figure(height: int | None = None) -> go.Figure:
    return go.Figure(go.Bar(x=["en", "de"], y=[1.0, 2.0]), layout={"height": height, "title": "tiny"})


def test_png_export(tmp_path):
    """One browser for two figures: sizes follow width, scale and each figure's layout height."""
    paths = write_images({"a": tiny_figure(height=240), "b": tiny_figure()}, tmp_path / "assets", width=320, scale=1.5)
    assert paths == [tmp_path / "assets" / "a.png", tmp_path / "assets" / "b.png"]
    assert png_size(paths[0]) == (480, 360)
    assert png_size(paths[1]) == (480, 750)  # no layout height: the 500 default


def test_missing_browser_names_the_install_step(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with pytest.raises(ImageExportError, match="make assets-deps"):
        images.find_browser()
    monkeypatch.delenv("BROWSER_PATH")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageExportError, match="chromium-headless-shell"):
        images.find_browser()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        write_images({"a": tiny_figure()}, tmp_path, fmt="gif")
    with pytest.raises(ValueError, match="file name"):
        write_images({"../a": tiny_figure()}, tmp_path)
    assert write_images({}, tmp_path) == []
    assert images.figure_height(tiny_figure(height=300), None) == 300
    assert images.figure_height(tiny_figure(height=300), 200) == 200
