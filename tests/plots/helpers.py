"""What every plot test checks about a written figure."""

from __future__ import annotations

from pathlib import Path


def check_png(path: Path, width: int, height: int) -> None:
    """The file decodes as an image of the figure's fixed size (inches × DPI) and is not huge."""
    from matplotlib.image import imread

    assert path.is_file()
    assert 5_000 < path.stat().st_size < 400_000
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width), pixels.shape
    assert pixels.std() > 0.01  # something was drawn, not a blank canvas
